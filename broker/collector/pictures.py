"""Evidence pictures put back together from their chunks: durably, and a bounded amount per unit.

A chunk is acknowledged as soon as it is kept here (SQLite, synchronous=FULL), never held
unacknowledged until its picture completes: a unit that starts pictures it never finishes
would otherwise fill the collector's MQTT receive window, and the broker would then deliver
nothing more — not another unit's alarm either. What one unit may hold half-done is bounded
(pictures and bytes), the whole is bounded too (the heaviest unit gives way), and a picture
not complete within `partial_timeout_s` is given up; `sweep` runs on every turn of the loop.

A whole picture goes into the evidence store only when a verified event of the same unit
signed its hash. One that comes before its event (a redelivery can reorder them) waits here,
bounded per unit, until the event is stored (`on_vouched`) or its time is up.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from broker import points
from broker.collector.inbound import Inbound
from broker.evidence import EvidenceRefused, EvidenceStore
from broker.influx import Record
from broker.ingest import Reason, Rejected
from broker.refs import EventRef, UnitRef
from protocol.models import WireError
from protocol.snapshot import Assembled, ChunkError, SnapshotChunk, assemble, open_chunk

log = logging.getLogger("jaga.collector.pictures")

S = 1_000_000_000
MB = 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS partial (site TEXT NOT NULL, device TEXT NOT NULL,
    event_id TEXT NOT NULL, sha256 TEXT NOT NULL, role TEXT NOT NULL, size INTEGER NOT NULL,
    count INTEGER NOT NULL, first_ns INTEGER NOT NULL,
    PRIMARY KEY (site, device, event_id, sha256)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS piece (site TEXT NOT NULL, device TEXT NOT NULL,
    event_id TEXT NOT NULL, sha256 TEXT NOT NULL, idx INTEGER NOT NULL, off INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (site, device, event_id, sha256, idx));
CREATE TABLE IF NOT EXISTS waiting (site TEXT NOT NULL, device TEXT NOT NULL,
    event_id TEXT NOT NULL, sha256 TEXT NOT NULL, role TEXT NOT NULL, data BLOB NOT NULL,
    since_ns INTEGER NOT NULL, PRIMARY KEY (site, device, event_id, sha256));
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


@dataclass
class _Partial:
    first: SnapshotChunk
    first_ns: int
    have: set[int] = field(default_factory=set)
    nbytes: int = 0


@dataclass(frozen=True, slots=True)
class StoredPicture:
    event: EventRef
    sha256: str
    role: str


@dataclass
class PictureBatch:
    """What a turn of the picture stage came to: points to store, messages rejected (dead
    letters, integrity), pictures now in the evidence store, and refusals of the store."""

    points: list[Record] = field(default_factory=list)
    rejected: list[tuple[Inbound | None, Rejected]] = field(default_factory=list)
    stored: list[StoredPicture] = field(default_factory=list)
    refused: list[tuple[UnitRef, EvidenceRefused]] = field(default_factory=list)

    def reject(self, m: Inbound | None, r: Rejected, received_ns: int) -> None:
        self.rejected.append((m, r))
        self.points.append(points.deadletter_point(r, received_ns))
        if r.is_integrity:
            self.points.append(points.integrity_point(r, received_ns))

    def extend(self, other: PictureBatch) -> None:
        self.points += other.points
        self.rejected += other.rejected
        self.stored += other.stored
        self.refused += other.refused


class Pictures:
    def __init__(
        self, path: Path, evidence: EvidenceStore, limits: PictureLimits | None = None
    ) -> None:
        self.evidence = evidence
        self.limits = limits or PictureLimits()
        self.dropped = 0
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._partials: dict[PictureRef, _Partial] = {}
        self._done: dict[PictureRef, None] = {}
        """Pictures completed recently, so late duplicates of their chunks are recognised."""
        self._waiting: dict[PictureRef, tuple[int, int]] = {}
        """Whole pictures waiting for their event: (bytes, since_ns)."""
        self._load()

    def _load(self) -> None:
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
        for site, device, event_id, sha, nbytes, since in self._db.execute(
            "SELECT site, device, event_id, sha256, length(data), since_ns FROM waiting"
        ):
            self._waiting[PictureRef(EventRef(site, device, event_id), sha)] = (nbytes, since)

    @property
    def partial_bytes(self) -> int:
        return sum(p.nbytes for p in self._partials.values())

    def held(self, unit: UnitRef) -> tuple[int, int]:
        """(half-done pictures, their bytes) of one unit."""
        mine = [p for k, p in self._partials.items() if k.unit == unit]
        return len(mine), sum(p.nbytes for p in mine)

    # chunks in ---------------------------------------------------------------------------

    def keep(self, msgs: list[Inbound], now_ns: int) -> PictureBatch:
        """Keep each chunk durably (the caller acknowledges them all once this returns);
        pictures completed by them go to the evidence store or wait for their event."""
        out = PictureBatch()
        self._db.execute("BEGIN")
        try:
            for m in msgs:
                try:
                    self._chunk(m, now_ns, out)
                except WireError as exc:  # ChunkError among them
                    reason = Reason.HASH if "hashes to" in str(exc) else Reason.PAYLOAD
                    where = m.where
                    r = Rejected(
                        m.topic,
                        reason,
                        str(exc),
                        m.payload[:2048],
                        where.site if where else None,
                        where.device if where else None,
                        event_id=where.arg if where else None,
                        size=len(m.payload),
                    )
                    out.reject(m, r, m.received_ns)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._load_again()
            raise
        return out

    def _chunk(self, m: Inbound, now_ns: int, out: PictureBatch) -> None:
        where = m.where
        if where is None or where.arg is None:
            raise ChunkError(f"{m.topic[:120]} is not a unit's snapshot/<event id> topic")
        header, data = open_chunk(where.arg, m.payload)
        key = PictureRef(EventRef(where.site, where.device, where.arg), header.sha256)
        if key in self._done:
            return  # a late duplicate of a picture already whole
        p = self._partials.get(key)
        if p is None:
            self._make_room(key.unit, header.size, now_ns)
            p = self._partials[key] = _Partial(header, now_ns)
            self._db.execute(
                "INSERT OR REPLACE INTO partial VALUES (?,?,?,?,?,?,?,?)",
                (*_cols(key), header.role, header.size, header.count, now_ns),
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
                (*_cols(key), header.index),
            ).fetchone()
            if row is not None and (int(row[0]), bytes(row[1])) != (header.offset, data):
                raise ChunkError(
                    f"chunk {header.index} of {header.sha256} arrived twice, different"
                )
            return
        self._db.execute(
            "INSERT OR REPLACE INTO piece VALUES (?,?,?,?,?,?,?)",
            (*_cols(key), header.index, header.offset, data),
        )
        p.have.add(header.index)
        p.nbytes += len(data)
        if len(p.have) < first.count:
            return
        pieces = {
            int(idx): (int(off), bytes(blob))
            for idx, off, blob in self._db.execute(
                "SELECT idx, off, data FROM piece WHERE site=? AND device=? AND event_id=?"
                " AND sha256=?",
                _cols(key),
            )
        }
        self._forget(key)
        self._done[key] = None
        while len(self._done) > 4096:
            del self._done[next(iter(self._done))]
        self._place(key, assemble(first, pieces), m, now_ns, out)

    def _place(
        self, key: PictureRef, pic: Assembled, m: Inbound | None, now_ns: int, out: PictureBatch
    ) -> None:
        """A whole picture: into the store if its unit's event signed it; refused if that
        event signed other pictures; else kept waiting for its event (bounded)."""
        vouched = self.evidence.vouched(key.event, key.sha256)
        if vouched is None:
            self._wait(key, pic, now_ns)
            return
        topic = m.topic if m is not None else f"snapshot/{key.event.event_id}"
        out.points.append(
            points.picture_point(key.event.site, key.event.device, pic, vouched, now_ns)
        )
        if not vouched:
            r = Rejected(
                topic,
                Reason.NOT_VOUCHED,
                f"picture {pic.sha256} is not among the hashes event {pic.event} signed",
                b"",
                key.event.site,
                key.event.device,
                event_id=pic.event,
                size=len(pic.data),
            )
            out.reject(m, r, now_ns)
            return
        try:
            self.evidence.put(pic.data, key.event)
        except EvidenceRefused as exc:
            self.dropped += 1
            out.refused.append((key.unit, exc))
            log.error("picture %s of %s not kept: %s", pic.sha256, key.event, exc)
            return
        out.stored.append(StoredPicture(key.event, pic.sha256, pic.role))

    def _wait(self, key: PictureRef, pic: Assembled, now_ns: int) -> None:
        budget = self.limits.unit_waiting_bytes
        mine = sorted(
            ((since, k, n) for k, (n, since) in self._waiting.items() if k.unit == key.unit),
            key=lambda t: t[0],
        )
        used = sum(n for _, _, n in mine)
        while mine and used + len(pic.data) > budget:
            _, old, n = mine.pop(0)
            self._drop_waiting(old, "more pictures of the unit wait for their events")
            used -= n
        if len(pic.data) > budget:
            self.dropped += 1
            log.warning(
                "%s: picture %s is larger than what may wait for its event", key.event, key.sha256
            )
            return
        self._db.execute(
            "INSERT OR REPLACE INTO waiting VALUES (?,?,?,?,?,?,?)",
            (*_cols(key), pic.role, pic.data, now_ns),
        )
        self._waiting[key] = (len(pic.data), now_ns)

    # events in ---------------------------------------------------------------------------

    def on_vouched(self, events: list[EventRef], now_ns: int) -> PictureBatch:
        """Events stored (and vouched in the evidence store): their waiting pictures move on."""
        out = PictureBatch()
        keys = [k for k in self._waiting if k.event in set(events)]
        if not keys:
            return out
        self._db.execute("BEGIN")
        for key in keys:
            row = self._db.execute(
                "SELECT role, data FROM waiting WHERE site=? AND device=? AND event_id=?"
                " AND sha256=?",
                _cols(key),
            ).fetchone()
            self._db.execute(
                "DELETE FROM waiting WHERE site=? AND device=? AND event_id=? AND sha256=?",
                _cols(key),
            )
            del self._waiting[key]
            if row is not None:
                pic = Assembled(key.event.event_id, key.sha256, str(row[0]), bytes(row[1]))
                self._place(key, pic, None, now_ns, out)
        self._db.execute("COMMIT")
        return out

    # bounds and time ---------------------------------------------------------------------

    def sweep(self, now_ns: int) -> int:
        """Give up half-done pictures and waiting ones whose time is up; returns how many."""
        partial_ns = int(self.limits.partial_timeout_s * S)
        waiting_ns = int(self.limits.waiting_timeout_s * S)
        late = [k for k, p in self._partials.items() if now_ns - p.first_ns > partial_ns]
        stale = [k for k, (_, since) in self._waiting.items() if now_ns - since > waiting_ns]
        if not late and not stale:
            return 0
        self._db.execute("BEGIN")
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
        for key in stale:
            self._drop_waiting(key, "its event never arrived")
        self._db.execute("COMMIT")
        return len(late) + len(stale)

    def _make_room(self, unit: UnitRef, size: int, now_ns: int) -> None:
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
            "DELETE FROM piece WHERE site=? AND device=? AND event_id=? AND sha256=?", _cols(key)
        )
        self._db.execute(
            "DELETE FROM partial WHERE site=? AND device=? AND event_id=? AND sha256=?",
            _cols(key),
        )
        self._partials.pop(key, None)

    def _drop_waiting(self, key: PictureRef, why: str) -> None:
        log.warning("%s: picture %s no longer waits: %s", key.event, key.sha256, why)
        self._db.execute(
            "DELETE FROM waiting WHERE site=? AND device=? AND event_id=? AND sha256=?",
            _cols(key),
        )
        self._waiting.pop(key, None)
        self.dropped += 1

    def _load_again(self) -> None:
        self._partials.clear()
        self._waiting.clear()
        self._load()

    def close(self) -> None:
        self._db.close()


def _cols(key: PictureRef) -> tuple[str, str, str, str]:
    return key.event.site, key.event.device, key.event.event_id, key.sha256
