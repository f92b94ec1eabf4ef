"""Units of time (integer nanoseconds, as every Jaga clock reads) and of size (bytes)."""

from __future__ import annotations

MS = 1_000_000
"""One millisecond in nanoseconds."""
S = 1_000_000_000
"""One second in nanoseconds."""
MINUTE = 60 * S
HOUR = 3600 * S
DAY = 24 * HOUR

KB = 1024
MB = 1024 * 1024
