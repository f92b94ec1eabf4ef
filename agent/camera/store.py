"""Evidence pictures on the unit's disk: content-addressed, written atomically, bounded in bytes.

Files live at <data_dir>/evidence/<sha256>.jpg (tmp + fsync + rename + fsync of the folder); a
small SQLite index beside them (WAL, synchronous=FULL) records which event claimed each file and
whether that event's copy reached the broker. A file is *held* while any claim on it is
undelivered, or while this process has stored it and not yet claimed it.

When a new file does not fit, files that are not held go first: orphans (stored by an earlier
run that died before claiming them, so no event vouches for them), then delivered files, oldest
first. Held files are never deleted. If a file still cannot fit, it is *refused*, not stored:
deleting undelivered evidence would destroy what an event already promised, and growing past the
bound would take the disk the outbox needs to keep alarms. A refusal is never silent: `put`
returns what was refused, and `pressure()` gives the figures and flag for the heartbeat. Within
a set, the still goes first, then frames by closeness to the trigger, so under pressure the
pictures that matter most are the ones kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.camera.evidence import EvidenceFile, EvidenceSet, Role
from kernel.files import Durability, atomic_write
from kernel.sqlite import open_db
from kernel.units import MB

log = logging.getLogger("jaga.agent.camera.store")

HEX = frozenset("0123456789abcdef")

SCHEMA = """
CREATE TABLE IF NOT EXISTS file (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    stored_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claim (
    event_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    rows TEXT NOT NULL DEFAULT '',
    delivered_ns INTEGER,
    PRIMARY KEY (event_id, sha256)
);
CREATE INDEX IF NOT EXISTS claim_by_file ON claim(sha256);
"""
ROLES = frozenset({"before", "still", "after"})


@dataclass(frozen=True, slots=True)
class Stored:
    """What put() did with a set: files kept (in set order) and files refused for lack of room."""

    kept: tuple[EvidenceFile, ...]
    refused: tuple[EvidenceFile, ...]

    @property
    def hashes(self) -> tuple[str, ...]:
        return tuple(f.sha256 for f in self.kept)


@dataclass(frozen=True, slots=True)
class Claim:
    """One event's claim on one picture: the outbox rows that last carried its chunks, its role
    in the set (None for claims made before roles were recorded) and whether it was delivered."""

    event_id: str
    sha256: str
    rows: tuple[int, ...]
    role: str | None
    delivered: bool


@dataclass(frozen=True, slots=True)
class Pressure:
    """Disk figures of the evidence store, for the heartbeat."""

    used_bytes: int
    max_bytes: int
    held_bytes: int
    """Bytes that may not be deleted: undelivered or not yet claimed."""
    refused_files: int
    """Files refused since the store was opened."""
    full: bool
    """The last put refused a file: new evidence is being lost until deliveries free room."""


def _check_sha(sha256: str) -> str:
    if len(sha256) != 64 or not set(sha256) <= HEX:
        raise ValueError(f"{sha256!r} is not a lowercase hex SHA-256")
    return sha256


class EvidenceStore:
    """Bounded, crash-safe picture store of one unit; safe to share between threads."""

    def __init__(
        self, data_dir: Path, *, max_bytes: int, wall_ns: Callable[[], int] = time.time_ns
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.dir = data_dir / "evidence"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._wall_ns = wall_ns
        self._lock = threading.Lock()
        self._unclaimed: set[str] = set()
        self._refused = 0
        self._full = False
        self._db = open_db(self.dir / "index.sqlite3", synchronous="FULL")
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(claim)")}
        if "role" not in columns:  # stores made before pictures could be sent again
            self._db.execute("ALTER TABLE claim ADD COLUMN role TEXT")
        self._reconcile()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # writing -----------------------------------------------------------------------------

    def put(self, evidence: EvidenceSet) -> Stored:
        """Store a set's pictures, most important first; the rest are refused if room runs out."""
        order = sorted(
            evidence.files,
            key=lambda f: (f.role is not Role.STILL, abs(f.mono_ns - evidence.trigger_ns)),
        )
        kept_shas = {f.sha256 for f in order if self.put_file(f.sha256, f.jpeg)}
        kept = tuple(f for f in evidence.files if f.sha256 in kept_shas)
        refused = tuple(f for f in evidence.files if f.sha256 not in kept_shas)
        if refused:
            log.error(
                "evidence store full: %d of %d pictures of %s refused (%d MB held undelivered)",
                len(refused),
                len(evidence.files),
                evidence.key,
                self.pressure().held_bytes // MB,
            )
        return Stored(kept, refused)

    def put_file(self, sha256: str, data: bytes) -> bool:
        """Store one picture under its hash (held until claimed); False if it cannot fit."""
        _check_sha(sha256)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"data does not hash to {sha256}")
        with self._lock:
            if self._db.execute("SELECT 1 FROM file WHERE sha256=?", (sha256,)).fetchone():
                self._unclaimed.add(sha256)
                return True
            if not self._make_room_locked(len(data)):
                self._refused += 1
                self._full = True
                return False
            atomic_write(self.path(sha256), data, durability=Durability.FSYNC_FILE_AND_DIR)
            self._db.execute(
                "INSERT INTO file(sha256, size, stored_ns) VALUES (?,?,?)",
                (sha256, len(data), self._wall_ns()),
            )
            self._unclaimed.add(sha256)
            self._full = False
            return True

    def claim(
        self,
        event_id: str,
        sha256s: Iterable[str],
        rows: Mapping[str, Sequence[int]] | None = None,
        roles: Mapping[str, str] | None = None,
    ) -> None:
        """The signed event `event_id` vouches for these files; `rows` are the outbox rows that
        carry each file's chunks, for settle(); `roles` each file's place in its set, so that
        its chunks can be made again (resend)."""
        rows = rows or {}
        roles = roles or {}
        shas = [_check_sha(sha) for sha in sha256s]
        bad = set(roles.values()) - ROLES
        if bad:
            raise ValueError(f"{sorted(bad)} are not picture roles")
        with self._lock:
            self._db.execute("BEGIN")
            for sha in shas:
                ids = ",".join(str(int(r)) for r in rows.get(sha, ()))
                role = roles.get(sha)
                self._db.execute(
                    "INSERT INTO claim(event_id, sha256, rows, role) VALUES (?,?,?,?)"
                    " ON CONFLICT(event_id, sha256) DO UPDATE SET rows=excluded.rows,"
                    " role=coalesce(excluded.role, claim.role)",
                    (event_id, sha, ids, role),
                )
            self._db.execute("COMMIT")
            self._unclaimed.difference_update(shas)

    def requeued(self, event_id: str, rows: Mapping[str, Sequence[int]]) -> None:
        """The chunks of these files were queued again in these outbox rows (a resend): the
        files are held again until the new rows are delivered."""
        updates = [
            (",".join(str(int(r)) for r in ids), event_id, _check_sha(sha))
            for sha, ids in rows.items()
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE claim SET rows=?, delivered_ns=NULL WHERE event_id=? AND sha256=?",
                updates,
            )
            self._db.execute("COMMIT")

    def claim_of(self, event_id: str, sha256: str) -> Claim | None:
        """What the store knows of event_id's claim on a file; None if there is none (never
        claimed, or the file was deleted to make room after delivery)."""
        with self._lock:
            row = self._db.execute(
                "SELECT rows, role, delivered_ns FROM claim WHERE event_id=? AND sha256=?",
                (event_id, sha256),
            ).fetchone()
        if row is None:
            return None
        ids = tuple(int(r) for r in str(row[0]).split(",") if r)
        return Claim(event_id, sha256, ids, row[1], row[2] is not None)

    def release(self, sha256s: Iterable[str]) -> None:
        """Stored but will not be claimed (the event could not be stored): no longer held."""
        with self._lock:
            self._unclaimed.difference_update(sha256s)

    def mark_delivered(self, event_id: str, sha256s: Iterable[str] | None = None) -> int:
        """The broker has the event's copy of these files (all, if None); returns claims marked."""
        now = self._wall_ns()
        with self._lock:
            if sha256s is None:
                cur = self._db.execute(
                    "UPDATE claim SET delivered_ns=? WHERE event_id=? AND delivered_ns IS NULL",
                    (now, event_id),
                )
                return cur.rowcount
            marked = 0
            for sha in sha256s:
                marked += self._db.execute(
                    "UPDATE claim SET delivered_ns=? WHERE event_id=? AND sha256=?"
                    " AND delivered_ns IS NULL",
                    (now, event_id, sha),
                ).rowcount
            return marked

    def settle(self, undelivered: Callable[[Sequence[int]], Collection[int]]) -> int:
        """Mark delivered every claim whose outbox rows are all acknowledged; `undelivered` tells
        which of the given rows are still waiting. Claims without rows are left alone."""
        with self._lock:
            open_claims = self._db.execute(
                "SELECT event_id, sha256, rows FROM claim WHERE delivered_ns IS NULL AND rows != ''"
            ).fetchall()
        done = []
        for event_id, sha, ids in open_claims:
            row_ids = [int(r) for r in ids.split(",")]
            if not set(undelivered(row_ids)):
                done.append((event_id, sha))
        now = self._wall_ns()
        with self._lock:
            self._db.executemany(
                "UPDATE claim SET delivered_ns=? WHERE event_id=? AND sha256=?",
                [(now, e, s) for e, s in done],
            )
        return len(done)

    # reading -----------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        return self.dir / f"{_check_sha(sha256)}.jpg"

    def read(self, sha256: str) -> bytes:
        """A stored picture (for a resend); raises FileNotFoundError if it is not here."""
        return self.path(sha256).read_bytes()

    def __contains__(self, sha256: object) -> bool:
        if not isinstance(sha256, str):
            return False
        with self._lock:
            row = self._db.execute("SELECT 1 FROM file WHERE sha256=?", (sha256,)).fetchone()
        return row is not None

    def is_held(self, sha256: str) -> bool:
        with self._lock:
            return self._held_locked(sha256)

    def pressure(self) -> Pressure:
        with self._lock:
            used = self._used_locked()
            held = sum(
                size
                for sha, size in self._db.execute("SELECT sha256, size FROM file")
                if self._held_locked(sha)
            )
            return Pressure(used, self.max_bytes, held, self._refused, self._full)

    # internals ---------------------------------------------------------------------------

    def _used_locked(self) -> int:
        return int(self._db.execute("SELECT coalesce(sum(size), 0) FROM file").fetchone()[0])

    def _held_locked(self, sha256: str) -> bool:
        if sha256 in self._unclaimed:
            return True
        row = self._db.execute(
            "SELECT 1 FROM claim WHERE sha256=? AND delivered_ns IS NULL LIMIT 1", (sha256,)
        ).fetchone()
        return row is not None

    def _make_room_locked(self, size: int) -> bool:
        """Delete unheld files, orphans first then oldest delivered, until `size` more fits."""
        need = self._used_locked() + size - self.max_bytes
        if need <= 0:
            return True
        rows = self._db.execute(
            "SELECT f.sha256, f.size, EXISTS(SELECT 1 FROM claim c WHERE c.sha256=f.sha256)"
            " FROM file f ORDER BY f.rowid"
        ).fetchall()
        candidates = [(sha, sz, claimed) for sha, sz, claimed in rows if not self._held_locked(sha)]
        candidates.sort(key=lambda c: bool(c[2]))  # orphans first; stable: oldest first
        if sum(sz for _, sz, _ in candidates) < need:
            return False
        for sha, sz, _ in candidates:
            if need <= 0:
                break
            self._delete_locked(sha)
            need -= sz
        return True

    def _delete_locked(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()
        self._db.execute("DELETE FROM claim WHERE sha256=?", (sha256,))
        self._db.execute("DELETE FROM file WHERE sha256=?", (sha256,))

    def _reconcile(self) -> None:
        """After a crash: drop temp files, index pictures that made it to disk, forget rows whose
        picture is gone. A picture that does not match its name is deleted: it is not evidence."""
        for tmp in self.dir.glob(".*.tmp"):  # atomic_write's temporary files
            tmp.unlink()
        indexed = {sha for (sha,) in self._db.execute("SELECT sha256 FROM file")}
        on_disk = set()
        for path in self.dir.glob("*.jpg"):
            sha = path.stem
            if len(sha) != 64 or not set(sha) <= HEX:
                continue  # not ours
            data = path.read_bytes() if sha not in indexed else None
            if data is not None and hashlib.sha256(data).hexdigest() != sha:
                log.error("evidence file %s does not match its hash; deleted", path.name)
                path.unlink()
                continue
            on_disk.add(sha)
            if data is not None:
                self._db.execute(
                    "INSERT INTO file(sha256, size, stored_ns) VALUES (?,?,?)",
                    (sha, len(data), self._wall_ns()),
                )
        for sha in indexed - on_disk:
            log.error("evidence file %s.jpg is missing from disk; dropped from the index", sha)
            self._db.execute("DELETE FROM claim WHERE sha256=?", (sha,))
            self._db.execute("DELETE FROM file WHERE sha256=?", (sha,))
