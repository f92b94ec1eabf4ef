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
from dataclasses import dataclass, field
from pathlib import Path

from broker import points
from broker.collector.inbound import Inbound
from broker.collector.partials import Partials, PictureLimits, PictureRef
from broker.evidence import EvidenceRefused, EvidenceVault
from broker.influx import Record
from broker.ingest import Reason, Rejected
from broker.refs import EventRef, UnitRef
from kernel.sqlite import open_db
from kernel.units import S
from protocol.models import WireError
from protocol.snapshot import Assembled, ChunkError, open_chunk

log = logging.getLogger("jaga.collector.pictures")

SCHEMA = """
CREATE TABLE IF NOT EXISTS waiting (site TEXT NOT NULL, device TEXT NOT NULL,
    event_id TEXT NOT NULL, sha256 TEXT NOT NULL, role TEXT NOT NULL, data BLOB NOT NULL,
    since_ns INTEGER NOT NULL, PRIMARY KEY (site, device, event_id, sha256));
"""


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
        self.points += points.rejection_points(r, received_ns)

    def extend(self, other: PictureBatch) -> None:
        self.points += other.points
        self.rejected += other.rejected
        self.stored += other.stored
        self.refused += other.refused


class Pictures:
    def __init__(
        self, path: Path, evidence: EvidenceVault, limits: PictureLimits | None = None
    ) -> None:
        self.evidence = evidence
        self.limits = limits or PictureLimits()
        self._db = open_db(path, synchronous="FULL", one_thread=True)
        self._db.executescript(SCHEMA)
        self.partials = Partials(self._db, self.limits)
        self._waiting: dict[PictureRef, tuple[int, int]] = {}
        """Whole pictures waiting for their event: (bytes, since_ns)."""
        self._dropped_waiting = 0
        self._load()

    def _load(self) -> None:
        self._waiting.clear()
        for site, device, event_id, sha, nbytes, since in self._db.execute(
            "SELECT site, device, event_id, sha256, length(data), since_ns FROM waiting"
        ):
            self._waiting[PictureRef(EventRef(site, device, event_id), sha)] = (nbytes, since)

    @property
    def dropped(self) -> int:
        """Pictures given up: half-done ones, and whole ones whose event never came."""
        return self.partials.dropped + self._dropped_waiting

    @property
    def partial_bytes(self) -> int:
        return self.partials.partial_bytes

    def held(self, unit: UnitRef) -> tuple[int, int]:
        """(half-done pictures, their bytes) of one unit."""
        return self.partials.held(unit)

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
            self.partials.load()
            self._load()
            raise
        return out

    def _chunk(self, m: Inbound, now_ns: int, out: PictureBatch) -> None:
        where = m.where
        if where is None or where.arg is None:
            raise ChunkError(f"{m.topic[:120]} is not a unit's snapshot/<event id> topic")
        header, data = open_chunk(where.arg, m.payload)
        key = PictureRef(EventRef(where.site, where.device, where.arg), header.sha256)
        whole = self.partials.add(key, header, data, now_ns)
        if whole is not None:
            self._place(key, whole, m, now_ns, out)

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
            self._dropped_waiting += 1
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
            self._dropped_waiting += 1
            log.warning(
                "%s: picture %s is larger than what may wait for its event", key.event, key.sha256
            )
            return
        self._db.execute(
            "INSERT OR REPLACE INTO waiting VALUES (?,?,?,?,?,?,?)",
            (*key.columns, pic.role, pic.data, now_ns),
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
                key.columns,
            ).fetchone()
            self._db.execute(
                "DELETE FROM waiting WHERE site=? AND device=? AND event_id=? AND sha256=?",
                key.columns,
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
        waiting_ns = int(self.limits.waiting_timeout_s * S)
        stale = [k for k, (_, since) in self._waiting.items() if now_ns - since > waiting_ns]
        if not stale and not self.partials.due(now_ns):
            return 0
        self._db.execute("BEGIN")
        given_up = self.partials.sweep(now_ns)
        for key in stale:
            self._drop_waiting(key, "its event never arrived")
        self._db.execute("COMMIT")
        return given_up + len(stale)

    def _drop_waiting(self, key: PictureRef, why: str) -> None:
        log.warning("%s: picture %s no longer waits: %s", key.event, key.sha256, why)
        self._db.execute(
            "DELETE FROM waiting WHERE site=? AND device=? AND event_id=? AND sha256=?",
            key.columns,
        )
        self._waiting.pop(key, None)
        self._dropped_waiting += 1

    def close(self) -> None:
        self._db.close()
