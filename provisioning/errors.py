"""The one exception a technician sees as a single line: a mistake they can fix, never a bug."""

from __future__ import annotations


class ProvisioningError(Exception):
    """A mistake in the request or the registry; the message says what is wrong and the fix."""
