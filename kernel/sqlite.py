"""Opening a SQLite file the one way Jaga does: WAL, a named synchronous level, a busy timeout."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

Synchronous = Literal["FULL", "NORMAL"]
"""FULL: a commit survives a power cut (what we acknowledge, alarms, logouts).
NORMAL: a power cut may lose the last commits, never corrupt; for what is rebuilt or re-sent."""


def open_db(
    path: Path,
    *,
    synchronous: Synchronous,
    busy_timeout_s: float = 5.0,
    check: bool = False,
    what: str = "database",
    one_thread: bool = False,
) -> sqlite3.Connection:
    """Open (creating its folder) a WAL database in autocommit mode; transactions are explicit.

    Args:
        synchronous: FULL or NORMAL (see Synchronous); there is no default.
        busy_timeout_s: how long a statement waits for another connection's lock.
        check: run `PRAGMA quick_check` and raise sqlite3.DatabaseError naming `what` and the
            path when it fails, so a damaged file stops the start instead of losing rows later.
        one_thread: True keeps sqlite3's check that only the opening thread uses it; False for
            connections shared between threads behind the owner's lock.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(
        path, isolation_level=None, check_same_thread=one_thread, timeout=busy_timeout_s
    )
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        if check:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(f"{what} {path} failed its integrity check: {result}")
    except BaseException:
        db.close()
        raise
    return db
