"""Log lines for a terminal, or for the journal with each line's level as its priority.

Under systemd, stderr is a stream to journald and `JOURNAL_STREAM` names it (device:inode).
Then each line starts with a syslog `<N>` prefix, which journald takes as the entry's
PRIORITY (`SyslogLevelPrefix=` is on by default), so `journalctl -p err` finds our errors;
the timestamp is left to the journal. Anywhere else the lines carry their own time.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

TERMINAL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "<%(priority)d>%(levelname)s %(name)s: %(message)s"


def syslog_priority(levelno: int) -> int:
    """Python's level as a syslog priority: 3 err, 4 warning, 6 info, 7 debug (2 crit)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class _Priority(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.priority = syslog_priority(record.levelno)
        return True


def connected_to_journal(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd gave us (not just any pipe)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):
        return False


def setup_logging(level: str, stream: TextIO | None = None) -> None:
    """Root logging at `level` (debug, info, warning, error) to stderr, journal-aware."""
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    if connected_to_journal(out):
        handler.addFilter(_Priority())
        handler.setFormatter(logging.Formatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(TERMINAL_FORMAT))
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True
    )
