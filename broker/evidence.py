"""The collector's evidence store: pictures by content hash, and an append-only custody log.

A picture is kept as `<sha256>.jpg`, written atomically (temporary file, fsync, rename), so a
file that exists is complete and its name is its proof. Every arrival is a line in
`custody.jsonl` (when, from which unit, for which event, how many bytes), fsynced and never
rewritten, so an auditor can follow each picture from the unit to the export.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Custody:
    ts: int
    sha256: str
    site: str
    device: str
    event_id: str
    size: int
    action: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "ts": self.ts,
                "sha256": self.sha256,
                "site": self.site,
                "device": self.device,
                "event_id": self.event_id,
                "bytes": self.size,
                "action": self.action,
            },
            separators=(",", ":"),
            sort_keys=True,
        )


class EvidenceStore:
    """Content-addressed pictures under `root`, with their custody log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "custody.jsonl"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            root / "index.sqlite3", isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vouch (event_id TEXT NOT NULL, sha256 TEXT NOT NULL,"
            " PRIMARY KEY (event_id, sha256)) WITHOUT ROWID"
        )

    def vouch(self, event_id: str, sha256s: tuple[str, ...]) -> None:
        """A verified, stored event names these pictures as its own."""
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO vouch(event_id, sha256) VALUES (?,?)",
                [(event_id, s) for s in sha256s],
            )

    def vouched(self, event_id: str, sha256: str) -> bool | None:
        """Is the picture one its event signed for? None when the event is not known yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sha256 FROM vouch WHERE event_id=?", (event_id,)
            ).fetchall()
        if not rows:
            return None
        return any(r[0] == sha256 for r in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.jpg"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put(self, data: bytes, *, site: str, device: str, event_id: str) -> str:
        """Keep a picture (once per content) and log its arrival; returns its SHA-256."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        with self._lock:
            if not target.exists():
                tmp = target.with_suffix(f".tmp{os.getpid()}")
                with tmp.open("wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
                _fsync_dir(self.root)
            self._log(Custody(time.time_ns(), sha, site, device, event_id, len(data), "received"))
        return sha

    def verify(self, sha256: str) -> bool:
        """The stored file still hashes to its name."""
        try:
            data = self.path(sha256).read_bytes()
        except OSError:
            return False
        return hashlib.sha256(data).hexdigest() == sha256

    def custody(self, *, event_id: str | None = None) -> list[dict[str, Any]]:
        """Custody lines, optionally only those of one event."""
        try:
            lines = self.log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = [json.loads(line) for line in lines if line.strip()]
        return [c for c in out if event_id is None or c["event_id"] == event_id]

    def _log(self, entry: Custody) -> None:
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(entry.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
