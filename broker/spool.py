"""The collector's disk spool: batches InfluxDB could not take wait here, durably, in order.

While InfluxDB is away the collector keeps acknowledging MQTT (so alerts and the broker's
queues keep moving) only because each batch is on this disk first. A drain thread replays
the batches once InfluxDB answers again. The spool is bounded: when it is full, the
collector stops acknowledging and the broker holds the messages instead.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lines BLOB NOT NULL,
    points INTEGER NOT NULL,
    created_ns INTEGER NOT NULL
);
"""


class SpoolFull(Exception):
    """The spool reached its size limit."""


class Spool:
    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT coalesce(sum(length(lines)), 0), count(*) FROM batch")
        self._bytes, self._batches = row.fetchone()

    def put(self, lines: bytes, points: int) -> None:
        """Store a batch durably (fsync) or raise SpoolFull."""
        with self._lock:
            if self._bytes + len(lines) > self.max_bytes:
                raise SpoolFull(f"spool holds {self._bytes} bytes, limit {self.max_bytes}")
            self._db.execute(
                "INSERT INTO batch(lines, points, created_ns) VALUES (?,?,?)",
                (lines, points, time.time_ns()),
            )
            self._bytes += len(lines)
            self._batches += 1

    def oldest(self) -> tuple[int, bytes, int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, lines, points FROM batch ORDER BY id LIMIT 1"
            ).fetchone()
        return (int(row[0]), bytes(row[1]), int(row[2])) if row else None

    def remove(self, batch_id: int) -> None:
        with self._lock:
            row = self._db.execute("SELECT length(lines) FROM batch WHERE id=?", (batch_id,))
            size = row.fetchone()
            self._db.execute("DELETE FROM batch WHERE id=?", (batch_id,))
            if size:
                self._bytes -= int(size[0])
                self._batches -= 1

    @property
    def batches(self) -> int:
        return int(self._batches)

    @property
    def bytes(self) -> int:
        return int(self._bytes)

    def close(self) -> None:
        with self._lock:
            self._db.close()
