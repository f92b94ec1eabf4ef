"""A durable FIFO of blobs in SQLite (WAL, fsync): what the collector has taken responsibility
for but cannot finish yet. Bounded in bytes; `put` raises QueueFull beyond the bound."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kernel.sqlite import open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS item (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meta TEXT NOT NULL,
    body BLOB NOT NULL,
    count INTEGER NOT NULL,
    created_ns INTEGER NOT NULL
);
"""


class QueueFull(Exception):
    """The queue reached its size limit."""


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    meta: str
    body: bytes
    count: int
    created_ns: int


class DiskQueue:
    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = open_db(path, synchronous="FULL")  # FULL: what it holds was acknowledged
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT coalesce(sum(length(body)), 0), count(*) FROM item")
        self._bytes, self._items = (int(v) for v in row.fetchone())

    def put_many(self, items: list[tuple[str, bytes, int]]) -> None:
        """Store (meta, body, count) items in one transaction, or none and raise QueueFull."""
        size = sum(len(body) for _, body, _ in items)
        with self._lock:
            if self._bytes + size > self.max_bytes:
                raise QueueFull(
                    f"{self.path.name} holds {self._bytes} bytes, limit {self.max_bytes}"
                )
            now = time.time_ns()
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO item(meta, body, count, created_ns) VALUES (?,?,?,?)",
                [(meta, body, count, now + i) for i, (meta, body, count) in enumerate(items)],
            )
            self._db.execute("COMMIT")
            self._bytes += size
            self._items += len(items)

    def put(self, meta: str, body: bytes, count: int = 1) -> None:
        self.put_many([(meta, body, count)])

    def peek(self, limit: int = 1, *, after_id: int = 0) -> list[Item]:
        """The oldest items (with an id above after_id), not removed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, meta, body, count, created_ns FROM item WHERE id > ?"
                " ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Item(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), int(r[4])) for r in rows]

    def newest_id(self) -> int:
        """The id of the newest item (0 when empty): items above an id are still to come."""
        with self._lock:
            row = self._db.execute("SELECT coalesce(max(id), 0) FROM item").fetchone()
        return int(row[0])

    def remove(self, items: list[Item]) -> list[Item]:
        """Remove items; returns those really removed (an item removed before is not again,
        and is not counted twice)."""
        if not items:
            return []
        removed: list[Item] = []
        with self._lock:
            self._db.execute("BEGIN")
            for item in items:
                if self._db.execute("DELETE FROM item WHERE id=?", (item.id,)).rowcount:
                    removed.append(item)
            self._db.execute("COMMIT")
            self._bytes -= sum(len(i.body) for i in removed)
            self._items -= len(removed)
        return removed

    def __len__(self) -> int:
        return self._items

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()
