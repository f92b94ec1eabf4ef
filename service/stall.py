"""A test hook: while the file named by $JAGA_DEBUG_STALL_FILE exists, the main loop hangs.

The services call the hook once per main-loop iteration. A test (or a technician on the bench
who wants to see systemd restart a hung unit) sets the variable, creates the file, and the loop
blocks inside its tick exactly as a hung loop would; removing the file releases it. The units in
systemd/ never set the variable, and unset it costs nothing: there is no hook at all.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("jaga.service.stall")

STALL_ENV = "JAGA_DEBUG_STALL_FILE"
POLL_S = 0.05


def stall_hook(env: Mapping[str, str] | None = None) -> Callable[[], None] | None:
    """The hook for the main loop, or None when the variable is unset."""
    value = (os.environ if env is None else env).get(STALL_ENV, "")
    if not value:
        return None
    path = Path(value)
    log.warning("%s=%s: the main loop hangs while that file exists (test hook)", STALL_ENV, path)

    def hold() -> None:
        if not path.exists():
            return
        log.warning("main loop held on purpose: %s exists", path)
        while path.exists():
            time.sleep(POLL_S)
        log.warning("main loop released: %s is gone", path)

    return hold
