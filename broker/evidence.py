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


RECHECK_NS = 7 * 24 * 3600 * 1_000_000_000
"""At start, events vouched this recently are checked again for pictures gone from the store."""


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A stored event whose vouched pictures are not all in the store (yet)."""

    event_id: str
    site: str | None
    device: str | None
    """None if the collector stopped between vouching and recording the unit: not asked for."""
    seq: int | None
    vouched_ns: int
    missing: tuple[str, ...]
    asks: int = 0
    last_ask_ns: int | None = None
    pictures: int = 0
    """How many pictures the event vouched for."""


class EvidenceStore:
    """Content-addressed pictures under `root`, with their custody log.

    Beside the pictures, an index of what verified events vouched for (`vouch`) and, per such
    event, its unit, when it was vouched, how many of its pictures were missing at the last
    check and how often the unit was asked for them again (`evidence_event`): the collector's
    picture-gap state is derived from it, so it survives a restart.
    """

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
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS evidence_event (event_id TEXT PRIMARY KEY, site TEXT,"
            " device TEXT, seq INTEGER, vouched_ns INTEGER NOT NULL, missing INTEGER,"
            " asks INTEGER NOT NULL DEFAULT 0, last_ask_ns INTEGER);"
            "CREATE INDEX IF NOT EXISTS evidence_open ON evidence_event(device)"
            " WHERE missing IS NULL OR missing > 0;"
        )
        # Pictures may have left the store while the collector was stopped: check again.
        self._db.execute(
            "UPDATE evidence_event SET missing=NULL WHERE missing=0 AND vouched_ns >= ?",
            (time.time_ns() - RECHECK_NS,),
        )

    def vouch(self, event_id: str, sha256s: tuple[str, ...]) -> None:
        """A verified, stored event names these pictures as its own."""
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO vouch(event_id, sha256) VALUES (?,?)",
                [(event_id, s) for s in sha256s],
            )
            self._db.execute(
                "INSERT OR IGNORE INTO evidence_event(event_id, vouched_ns) VALUES (?,?)",
                (event_id, time.time_ns()),
            )

    def note_unit(self, event_id: str, site: str, device: str, seq: int) -> None:
        """Which unit's event (and seq) vouched: the one to ask if its pictures do not come."""
        with self._lock:
            self._db.execute(
                "UPDATE evidence_event SET site=?, device=?, seq=? WHERE event_id=?",
                (site, device, seq, event_id),
            )

    def unfinished(self, device: str | None = None, limit: int = -1) -> list[Unfinished]:
        """Events (of one unit, or all) whose vouched pictures are not all in the store, checked
        now; events found complete are not checked again. With a limit, events known to miss
        pictures come first, then those not checked yet, oldest first."""
        where = "(missing IS NULL OR missing > 0)"
        args: tuple[str | int, ...] = ()
        if device is not None:
            where += " AND device=?"
            args = (device,)
        with self._lock:
            rows = self._db.execute(
                "SELECT e.event_id, site, device, seq, vouched_ns, asks, last_ask_ns,"
                " (SELECT group_concat(v.sha256) FROM vouch v WHERE v.event_id=e.event_id)"
                f" FROM evidence_event e WHERE {where}"
                " ORDER BY missing IS NULL, vouched_ns LIMIT ?",
                (*args, limit),
            ).fetchall()
        out: list[Unfinished] = []
        counts: list[tuple[int, str]] = []
        for event_id, site, dev, seq, vouched_ns, asks, last_ask_ns, shas in rows:
            if shas is None:
                continue
            hashes = str(shas).split(",")
            missing = tuple(sorted(h for h in hashes if not self.has(h)))
            counts.append((len(missing), event_id))
            if missing:
                out.append(
                    Unfinished(
                        event_id,
                        site,
                        dev,
                        seq,
                        vouched_ns,
                        missing,
                        asks,
                        last_ask_ns,
                        len(hashes),
                    )
                )
        with self._lock:
            self._db.executemany("UPDATE evidence_event SET missing=? WHERE event_id=?", counts)
        return out

    def asked(self, event_id: str, now_ns: int) -> None:
        """The unit was asked to send the event's pictures again."""
        with self._lock:
            self._db.execute(
                "UPDATE evidence_event SET asks=asks+1, last_ask_ns=? WHERE event_id=?",
                (now_ns, event_id),
            )

    def missing_counts(self, older_than_ns: int, max_asks: int) -> tuple[int, int, int]:
        """(events, pictures, events given up) found missing at their last check, of events
        vouched before `older_than_ns` (younger ones may simply be on their way); given up:
        asked for max_asks times, or of no known unit."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(missing), 0),"
                " coalesce(sum(asks >= ? OR device IS NULL), 0) FROM evidence_event"
                " WHERE missing > 0 AND vouched_ns < ?",
                (max_asks, older_than_ns),
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

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
