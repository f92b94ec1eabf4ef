"""The collector's evidence vault: pictures by content hash, with their custody log. (The unit's
agent.camera.store.EvidenceStore holds its pictures only until the collector has them; the
vault keeps them for whoever must later prove what happened.)

A picture is kept as `<sha256>.jpg`, written atomically (temporary file, fsync, rename), so a
file that exists is complete and its name is its proof. Only pictures a verified event of
the same unit signed for are kept (broker.collector.pictures holds the others for a while);
every arrival is a line of the custody log (broker.custody).

What one unit may keep is bounded (`unit_max_bytes`), and so is the whole store
(`max_bytes`, and `min_free_bytes` left on the disk): past a bound `put` raises
EvidenceRefused and the collector goes on storing events — a full disk is an alert, never a
crash of the loop.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.custody import Custody, CustodyLog
from broker.refs import EventRef, UnitRef
from kernel.files import Durability, atomic_write
from kernel.sqlite import open_db
from kernel.units import DAY, MB

RECHECK_NS = 7 * DAY
"""At start, events vouched this recently are checked again for pictures gone from the store."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS picture_vouch (site TEXT NOT NULL, device TEXT NOT NULL,
    event_id TEXT NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (site, device, event_id, sha256)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vouched_event (site TEXT NOT NULL, device TEXT NOT NULL,
    event_id TEXT NOT NULL, seq INTEGER, vouched_ns INTEGER NOT NULL, missing INTEGER,
    asks INTEGER NOT NULL DEFAULT 0, last_ask_ns INTEGER,
    PRIMARY KEY (site, device, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vouched_open ON vouched_event(site, device)
    WHERE missing IS NULL OR missing > 0;
CREATE TABLE IF NOT EXISTS stored_picture (sha256 TEXT PRIMARY KEY, site TEXT NOT NULL,
    device TEXT NOT NULL, bytes INTEGER NOT NULL, stored_ns INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stored_by_unit ON stored_picture(site, device);
"""


class EvidenceRefused(Exception):
    """A picture was not kept: a quota or the disk is full. The message says which."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A stored event whose vouched pictures are not all in the store (yet)."""

    event_id: str
    site: str
    device: str
    seq: int | None
    """None if the collector stopped between vouching and recording the seq: not asked for."""
    vouched_ns: int
    missing: tuple[str, ...]
    asks: int = 0
    last_ask_ns: int | None = None
    pictures: int = 0
    """How many pictures the event vouched for."""

    @property
    def ref(self) -> EventRef:
        return EventRef(self.site, self.device, self.event_id)


class EvidenceVault:
    """Content-addressed pictures under `root`, with their custody log.

    Beside the pictures, an index of what verified events vouched for (`vouch`, keyed by the
    unit and the event) and, per such event, its seq, when it was vouched, how many of its
    pictures were missing at the last check and how often the unit was asked for them again:
    the collector's picture-gap state is derived from it, so it survives a restart.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = 64 * 1024 * MB,
        unit_max_bytes: int = 2 * 1024 * MB,
        min_free_bytes: int = 512 * MB,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.unit_max_bytes = unit_max_bytes
        self.min_free_bytes = min_free_bytes
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "custody.jsonl"
        self._lock = threading.Lock()
        self._db = open_db(root / "index.sqlite3", synchronous="FULL")  # FULL: SQLite's default
        self._db.executescript(SCHEMA)
        self._custody = CustodyLog(self.log_path, root / "custody.sqlite3")
        # Pictures may have left the store while the collector was stopped: check again.
        self._db.execute(
            "UPDATE vouched_event SET missing=NULL WHERE missing=0 AND vouched_ns >= ?",
            (time.time_ns() - RECHECK_NS,),
        )
        row = self._db.execute("SELECT coalesce(sum(bytes), 0) FROM stored_picture").fetchone()
        self._bytes = int(row[0])

    @property
    def kept_bytes(self) -> int:
        """Bytes of the pictures kept."""
        return self._bytes

    @property
    def torn_custody_lines(self) -> int:
        return self._custody.torn

    def vouch(self, event: EventRef, sha256s: tuple[str, ...], seq: int | None = None) -> None:
        """A verified, stored event of this unit names these pictures as its own."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO picture_vouch(site, device, event_id, sha256)"
                " VALUES (?,?,?,?)",
                [(event.site, event.device, event.event_id, s) for s in sha256s],
            )
            self._db.execute(
                "INSERT OR IGNORE INTO vouched_event(site, device, event_id, seq, vouched_ns)"
                " VALUES (?,?,?,?,?)",
                (event.site, event.device, event.event_id, seq, time.time_ns()),
            )
            self._db.execute("COMMIT")

    def unfinished(self, unit: UnitRef | None = None, limit: int = -1) -> list[Unfinished]:
        """Events (of one unit, or all) whose vouched pictures are not all in the store, checked
        now; events found complete are not checked again. With a limit, events known to miss
        pictures come first, then those not checked yet, oldest first."""
        where = "(missing IS NULL OR missing > 0)"
        args: tuple[str | int, ...] = ()
        if unit is not None:
            where += " AND e.site=? AND e.device=?"
            args = (unit.site, unit.device)
        with self._lock:
            rows = self._db.execute(
                "SELECT e.event_id, e.site, e.device, seq, vouched_ns, asks, last_ask_ns,"
                " (SELECT group_concat(v.sha256) FROM picture_vouch v WHERE v.site=e.site"
                " AND v.device=e.device AND v.event_id=e.event_id)"
                f" FROM vouched_event e WHERE {where}"
                " ORDER BY missing IS NULL, vouched_ns LIMIT ?",
                (*args, limit),
            ).fetchall()
        out: list[Unfinished] = []
        counts: list[tuple[int, str, str, str]] = []
        for event_id, site, dev, seq, vouched_ns, asks, last_ask_ns, shas in rows:
            if shas is None:
                continue
            hashes = str(shas).split(",")
            missing = tuple(sorted(h for h in hashes if not self.has(h)))
            counts.append((len(missing), site, dev, event_id))
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
        with self._lock:  # one commit for the whole check, not one fsync per event
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE vouched_event SET missing=? WHERE site=? AND device=? AND event_id=?",
                counts,
            )
            self._db.execute("COMMIT")
        return out

    def asked(self, event: EventRef, now_ns: int) -> None:
        """The unit was asked to send the event's pictures again."""
        with self._lock:
            self._db.execute(
                "UPDATE vouched_event SET asks=asks+1, last_ask_ns=?"
                " WHERE site=? AND device=? AND event_id=?",
                (now_ns, event.site, event.device, event.event_id),
            )

    def missing_counts(self, older_than_ns: int, max_asks: int) -> tuple[int, int, int]:
        """(events, pictures, events given up) found missing at their last check, of events
        vouched before `older_than_ns` (younger ones may simply be on their way); given up:
        asked for max_asks times, or of no known seq."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(missing), 0),"
                " coalesce(sum(asks >= ? OR seq IS NULL), 0) FROM vouched_event"
                " WHERE missing > 0 AND vouched_ns < ?",
                (max_asks, older_than_ns),
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def vouched(self, event: EventRef, sha256: str) -> bool | None:
        """Is the picture one this unit's event signed for? None when the event is not known."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sha256 FROM picture_vouch WHERE site=? AND device=? AND event_id=?",
                (event.site, event.device, event.event_id),
            ).fetchall()
        if not rows:
            return None
        return any(r[0] == sha256 for r in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._custody.close()

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.jpg"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put(self, data: bytes, event: EventRef) -> str:
        """Keep a picture (once per content) and log its arrival; returns its SHA-256.
        EvidenceRefused when the unit's quota, the store's or the disk is full."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        with self._lock:
            if not target.exists():
                self._check_room(event.unit, len(data))
                try:
                    # FSYNC_FILE_AND_DIR: the picture is acknowledged once put returns.
                    atomic_write(target, data, durability=Durability.FSYNC_FILE_AND_DIR)
                except OSError as exc:
                    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    raise EvidenceRefused(
                        f"cannot write picture {sha} to {self.root}: {exc.strerror or exc}",
                        disk_full=full,
                    ) from None
                self._db.execute(
                    "INSERT OR IGNORE INTO stored_picture(sha256, site, device, bytes, stored_ns)"
                    " VALUES (?,?,?,?,?)",
                    (sha, event.site, event.device, len(data), time.time_ns()),
                )
                self._bytes += len(data)
        entry = Custody(
            time.time_ns(), sha, event.site, event.device, event.event_id, len(data), "received"
        )
        try:
            self._custody.append(entry)
        except OSError as exc:
            raise EvidenceRefused(
                f"picture {sha} kept, but its custody line could not be written: "
                f"{exc.strerror or exc}",
                disk_full=exc.errno in (errno.ENOSPC, errno.EDQUOT),
            ) from None
        return sha

    def _check_room(self, unit: UnitRef, size: int) -> None:
        if self._bytes + size > self.max_bytes:
            raise EvidenceRefused(
                f"the evidence store holds {self._bytes // MB} MiB, its limit is "
                f"{self.max_bytes // MB} MiB (evidence_max_mb in collector.toml)",
                disk_full=True,
            )
        row = self._db.execute(
            "SELECT coalesce(sum(bytes), 0) FROM stored_picture WHERE site=? AND device=?",
            (unit.site, unit.device),
        ).fetchone()
        if int(row[0]) + size > self.unit_max_bytes:
            raise EvidenceRefused(
                f"{unit} has {int(row[0]) // MB} MiB of pictures, its limit is "
                f"{self.unit_max_bytes // MB} MiB (evidence_unit_max_mb in collector.toml)"
            )
        free = shutil.disk_usage(self.root).free
        if free - size < self.min_free_bytes:
            raise EvidenceRefused(
                f"only {free // MB} MiB free on the disk of {self.root}; "
                f"{self.min_free_bytes // MB} MiB are kept free for events",
                disk_full=True,
            )

    def verify(self, sha256: str) -> bool:
        """The stored file still hashes to its name."""
        try:
            data = self.path(sha256).read_bytes()
        except OSError:
            return False
        return hashlib.sha256(data).hexdigest() == sha256

    def custody(
        self,
        *,
        event_id: str | None = None,
        sha256: str | None = None,
        site: str | None = None,
        device: str | None = None,
    ) -> list[dict[str, Any]]:
        """Custody lines (indexed), filtered by what is given."""
        return self._custody.lines(event_id=event_id, sha256=sha256, site=site, device=device)
