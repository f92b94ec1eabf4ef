"""The nonces of accepted signed commands, on disk, so a replay is refused even after a restart.

Both receivers keep one: the collector for operators' site commands, each unit for its own
commands. A nonce needs keeping only while its command could still pass the age check; older
ones are pruned at every admission, which bounds the book by the commands of one window.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from kernel.sqlite import open_db

_RAISE_FLOOR = (
    "INSERT INTO meta VALUES ('newest', ?) "
    "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)"
)
"""The newest time seen: raised, never lowered."""


class NonceBookUnavailable(Exception):
    """The book could not be read or written (a full disk, an I/O error): the command is refused,
    because a nonce that cannot be remembered could be replayed."""


class NonceBook:
    """Which nonces were accepted, and the newest command time seen (a floor for "now")."""

    def __init__(self, path: Path, window_ns: int) -> None:
        self.window_ns = window_ns
        self._lock = threading.Lock()
        # FULL: a restart must not reopen a window.
        self._db = open_db(path, synchronous="FULL", what="command nonces")
        self._db.execute("CREATE TABLE IF NOT EXISTS nonce (nonce TEXT PRIMARY KEY, ts INTEGER)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")

    def newest(self) -> int:
        """The newest command time accepted or clock time noted (0: none yet)."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key='newest'").fetchone()
        except sqlite3.Error as exc:
            raise NonceBookUnavailable(f"command nonces: {exc}") from exc
        return int(row[0]) if row else 0

    def note(self, ts: int) -> None:
        """A time known to have passed (a synchronised clock): raises the floor, never lowers."""
        with self._lock:
            try:
                self._db.execute(_RAISE_FLOOR, (ts,))
            except sqlite3.Error as exc:  # a full disk: the floor stays where it was
                raise NonceBookUnavailable(f"command nonces: {exc}") from exc

    def admit(self, nonce: str, ts: int) -> bool:
        """Record the nonce of a command that passed every other check; False if seen before."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seen = self._db.execute("SELECT 1 FROM nonce WHERE nonce=?", (nonce,)).fetchone()
                if seen is None:
                    self._db.execute("INSERT INTO nonce VALUES (?, ?)", (nonce, ts))
                    self._db.execute(_RAISE_FLOOR, (ts,))
                    newest = self._db.execute("SELECT value FROM meta WHERE key='newest'")
                    floor = int(newest.fetchone()[0]) - 2 * self.window_ns
                    self._db.execute("DELETE FROM nonce WHERE ts < ?", (floor,))
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:  # SQLite may have rolled back by itself (disk full)
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise NonceBookUnavailable(f"command nonces: {exc}") from exc
                raise
        return seen is None

    def close(self) -> None:
        self._db.close()
