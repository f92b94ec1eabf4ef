"""Half-done evidence pictures, kept durably (SQLite, synchronous=FULL) and bounded.

A chunk is kept here before it is acknowledged; a picture's last chunk brings it back whole
(`add` returns it, checked against the size and SHA-256 its chunks announced). What one
unit may hold half-done is bounded (pictures and bytes), the whole is bounded too (the unit
holding the most gives way), and `sweep` gives up pictures not complete in time.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field

from broker.refs import EventRef, UnitRef
from kernel.units import MB, S
from protocol.snapshot import Assembled, ChunkError, SnapshotChunk, assemble

log = logging.getLogger("jaga.collector.pictures")

DONE_REMEMBERED = 4096

SCHEMA = """
CREATE TABLE IF NOT EXISTS partial (site TEXT NOT NULL, device TEXT NOT NULL,
    event_id TEXT NOT NULL, sha256 TEXT NOT NULL, role TEXT NOT NULL, size INTEGER NOT NULL,
    count INTEGER NOT NULL, first_ns INTEGER NOT NULL,
    PRIMARY KEY (site, device, event_id, sha256)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS piece (site TEXT NOT NULL, device TEXT NOT NULL,
    event_id TEXT NOT NULL, sha256 TEXT NOT NULL, idx INTEGER NOT NULL, off INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (site, device, event_id, sha256, idx));
"""


@dataclass(frozen=True, slots=True)
class PictureLimits:
    unit_partials: int = 32
    """Pictures one unit may have half-done (a unit sends its pictures one after the other)."""
    unit_partial_bytes: int = 32 * MB
    partial_bytes: int = 512 * MB
    """All units together; past it the unit holding the most gives way."""
    partial_timeout_s: float = 120.0
    unit_waiting_bytes: int = 16 * MB
    """Whole pictures of one unit waiting for their event."""
    waiting_timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class PictureRef:
    event: EventRef
    sha256: str

    @property
    def unit(self) -> UnitRef:
        return self.event.unit

    @property
    def columns(self) -> tuple[str, str, str, str]:
        return self.event.site, self.event.device, self.event.event_id, self.sha256


@dataclass
class _Partial:
    first: SnapshotChunk
    first_ns: int
    have: set[int] = field(default_factory=set)
    nbytes: int = 0


class Partials:
    """The half-done pictures; every write happens inside the caller's transaction on db."""

    def __init__(self, db: sqlite3.Connection, limits: PictureLimits) -> None:
        self._db = db
        self.limits = limits
        self.dropped = 0
        db.executescript(SCHEMA)
        self._partials: dict[PictureRef, _Partial] = {}
        self._done: dict[PictureRef, None] = {}
        """Pictures completed recently, so late duplicates of their chunks are recognised."""
        self.load()

    def load(self) -> None:
        self._partials.clear()
        for site, device, event_id, sha, role, size, count, first_ns in self._db.execute(
            "SELECT site, device, event_id, sha256, role, size, count, first_ns FROM partial"
        ):
            key = PictureRef(EventRef(site, device, event_id), sha)
            first = SnapshotChunk(
                event=event_id, sha256=sha, role=role, size=size, index=0, count=count, offset=0
            )
            self._partials[key] = _Partial(first, first_ns)
        for site, device, event_id, sha, idx, nbytes in self._db.execute(
            "SELECT site, device, event_id, sha256, idx, length(data) FROM piece"
        ):
            p = self._partials.get(PictureRef(EventRef(site, device, event_id), sha))
            if p is not None:
                p.have.add(idx)
                p.nbytes += nbytes

    @property
    def partial_bytes(self) -> int:
        return sum(p.nbytes for p in self._partials.values())

    def held(self, unit: UnitRef) -> tuple[int, int]:
        """(half-done pictures, their bytes) of one unit."""
        mine = [p for k, p in self._partials.items() if k.unit == unit]
        return len(mine), sum(p.nbytes for p in mine)

    def add(
        self, key: PictureRef, header: SnapshotChunk, data: bytes, now_ns: int
    ) -> Assembled | None:
        """Keep one chunk; the whole picture once its last chunk is in (ChunkError if the
        chunk contradicts its picture, or the whole does not hash to what was announced)."""
        if key in self._done:
            return None  # a late duplicate of a picture already whole
        p = self._partials.get(key)
        if p is None:
            self._make_room(key.unit, header.size)
            p = self._partials[key] = _Partial(header, now_ns)
            self._db.execute(
                "INSERT OR REPLACE INTO partial VALUES (?,?,?,?,?,?,?,?)",
                (*key.columns, header.role, header.size, header.count, now_ns),
            )
        first = p.first
        if (header.size, header.count, header.role) != (first.size, first.count, first.role):
            raise ChunkError(
                f"chunk {header.index} of {header.sha256} disagrees with the first chunk "
                "on size, count or role"
            )
        if header.index in p.have:
            row = self._db.execute(
                "SELECT off, data FROM piece WHERE site=? AND device=? AND event_id=?"
                " AND sha256=? AND idx=?",
                (*key.columns, header.index),
            ).fetchone()
            if row is not None and (int(row[0]), bytes(row[1])) != (header.offset, data):
                raise ChunkError(
                    f"chunk {header.index} of {header.sha256} arrived twice, different"
                )
            return None
        self._db.execute(
            "INSERT OR REPLACE INTO piece VALUES (?,?,?,?,?,?,?)",
            (*key.columns, header.index, header.offset, data),
        )
        p.have.add(header.index)
        p.nbytes += len(data)
        if len(p.have) < first.count:
            return None
        pieces = {
            int(idx): (int(off), bytes(blob))
            for idx, off, blob in self._db.execute(
                "SELECT idx, off, data FROM piece WHERE site=? AND device=? AND event_id=?"
                " AND sha256=?",
                key.columns,
            )
        }
        self._forget(key)
        self._done[key] = None
        while len(self._done) > DONE_REMEMBERED:
            del self._done[next(iter(self._done))]
        return assemble(first, pieces)

    def sweep(self, now_ns: int) -> int:
        """Give up half-done pictures whose time is up (inside the caller's transaction)."""
        limit = int(self.limits.partial_timeout_s * S)
        late = [k for k, p in self._partials.items() if now_ns - p.first_ns > limit]
        for key in late:
            p = self._partials[key]
            log.error(
                "%s: picture %s incomplete after %.0f s (%d of %d chunks); giving up",
                key.event,
                key.sha256,
                self.limits.partial_timeout_s,
                len(p.have),
                p.first.count,
            )
            self._forget(key)
            self.dropped += 1
        return len(late)

    def due(self, now_ns: int) -> bool:
        """Whether sweep() has anything to do now (cheap: no SQL)."""
        limit = int(self.limits.partial_timeout_s * S)
        return any(now_ns - p.first_ns > limit for p in self._partials.values())

    def _make_room(self, unit: UnitRef, size: int) -> None:
        """Before a new picture of `unit` starts: its own oldest give way past its bounds, and
        the unit holding the most gives way past the bound of all."""
        lim = self.limits
        mine = sorted(
            ((p.first_ns, k) for k, p in self._partials.items() if k.unit == unit),
            key=lambda t: t[0],
        )
        held = sum(self._partials[k].nbytes for _, k in mine)
        while mine and (len(mine) >= lim.unit_partials or held + size > lim.unit_partial_bytes):
            _, old = mine.pop(0)
            held -= self._partials[old].nbytes
            self._evict(old, f"{unit} holds too many half-done pictures")
        total = self.partial_bytes
        while total + size > lim.partial_bytes and self._partials:
            by_unit: dict[UnitRef, int] = {}
            for k, p in self._partials.items():
                by_unit[k.unit] = by_unit.get(k.unit, 0) + p.nbytes
            heaviest = max(by_unit, key=lambda u: by_unit[u])
            old = min(
                (k for k in self._partials if k.unit == heaviest),
                key=lambda k: self._partials[k].first_ns,
            )
            total -= self._partials[old].nbytes
            self._evict(old, "half-done pictures of all units are at their bound")

    def _evict(self, key: PictureRef, why: str) -> None:
        log.warning("%s: half-done picture %s given up: %s", key.event, key.sha256, why)
        self._forget(key)
        self.dropped += 1

    def _forget(self, key: PictureRef) -> None:
        self._db.execute(
            "DELETE FROM piece WHERE site=? AND device=? AND event_id=? AND sha256=?", key.columns
        )
        self._db.execute(
            "DELETE FROM partial WHERE site=? AND device=? AND event_id=? AND sha256=?",
            key.columns,
        )
        self._partials.pop(key, None)
