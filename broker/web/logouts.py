"""Sessions ended by logging out, kept in SQLite so that a restart does not bring them back.

A session cookie stays genuine until its lifetime ends (the signing key survives restarts, so
the post's screen stays logged in); a logged-out session's id is therefore kept here until that
lifetime would have ended, and read back into memory when the page starts.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from kernel.sqlite import open_db


class Logouts:
    """Logged-out session ids and when each would have expired; on disk when given a path."""

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._until: dict[str, float] = {}
        if path is None:
            return  # memory only: for tests that build the app by hand
        path.parent.mkdir(parents=True, exist_ok=True)
        db = open_db(path, synchronous="FULL")  # a logout must survive a power cut
        db.execute("CREATE TABLE IF NOT EXISTS logout (sid TEXT PRIMARY KEY, until REAL NOT NULL)")
        self._until = dict(db.execute("SELECT sid, until FROM logout").fetchall())
        self._db = db

    def __contains__(self, sid: str) -> bool:
        return sid in self._until

    def __len__(self) -> int:
        return len(self._until)

    def add(self, sid: str, until: float, now: float) -> None:
        """Remember sid until `until`; forget those whose sessions have expired by `now`."""
        with self._lock:
            if self._db is not None:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.execute("DELETE FROM logout WHERE until <= ?", (now,))
                    self._db.execute(
                        "INSERT OR REPLACE INTO logout(sid, until) VALUES (?, ?)", (sid, until)
                    )
            kept = {s: t for s, t in self._until.items() if t > now}
            kept[sid] = until
            self._until = kept

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
