"""When to ask a unit for evidence pictures again: its event is stored, its pictures are not.

Picture chunks leave the unit's outbox as soon as the broker acknowledges them (the unit's
evidence store keeps the pictures), so a broker that dies before saving its queues loses them
for good unless someone asks. A resend of the events repairs what it covers (the unit chunks
the pictures of the camera events in the range again); this catches the rest: an event whose
vouched pictures are not all in the collector's store, well after it was stored and after the
unit has reported an empty outbox since (so a slow upload is not taken for a loss), is asked
for again with a one-seq `resend` — a few times, further and further apart, then given up and
reported. The decision is pure (`EvidencePlanner`); `EvidenceGaps` feeds it from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.evidence import EvidenceVault, Unfinished
from broker.refs import EventRef, UnitRef
from kernel.units import S

log = logging.getLogger("jaga.collector.evidence")

CHECK_LIMIT = 500
"""Events of one unit checked per heartbeat (after a restart, recent ones are all checked again)."""


@dataclass(frozen=True, slots=True)
class EvidenceAsk:
    """Ask `device` to send event `seq` again, and with it the pictures it vouched for."""

    site: str
    device: str
    seq: int
    event_id: str
    missing: int
    attempt: int


@dataclass(frozen=True, slots=True)
class GapSummary:
    events: int
    """Events stored longer than the grace time with pictures still missing."""
    pictures: int
    given_up: int
    """Of those, events asked for max_asks times (or of no known unit): not asked again."""

    def line(self) -> str:
        text = f"{self.events} events missing {self.pictures} pictures"
        return text + (f" ({self.given_up} given up)" if self.given_up else "")


@dataclass
class EvidencePlanner:
    """Pure: which unfinished events to ask for now, given the units' latest heartbeats."""

    grace_ns: int = 120 * S
    """After the event was stored, before its pictures may be called missing."""
    max_asks: int = 5
    per_device: int = 8
    """Events asked for per unit in one round (each is one command)."""
    _empty_at: dict[UnitRef, int] = field(default_factory=dict)
    """Per unit, when a heartbeat last reported an empty outbox (collector's clock)."""

    def on_heartbeat(self, unit: UnitRef, outbox_depth: int, now_ns: int) -> None:
        if outbox_depth == 0:
            self._empty_at[unit] = now_ns

    def backoff_ns(self, asks: int) -> int:
        """Wait after the asks-th ask before the next: grace, then twice that, and so on."""
        return self.grace_ns << max(0, asks - 1)

    def given_up(self, u: Unfinished) -> bool:
        """Never to be asked for (again): asked max_asks times, or of no known seq."""
        return u.seq is None or u.asks >= self.max_asks

    def lost(self, u: Unfinished, now_ns: int) -> bool:
        """Given up, and the answer to the last ask has had its time to come."""
        if u.seq is None:
            return True
        waited = u.last_ask_ns is not None and now_ns - u.last_ask_ns >= self.backoff_ns(u.asks)
        return self.given_up(u) and waited

    def due(self, unfinished: Iterable[Unfinished], now_ns: int) -> list[EvidenceAsk]:
        asks: list[EvidenceAsk] = []
        per_device: dict[UnitRef, int] = {}
        for u in sorted(unfinished, key=lambda u: u.vouched_ns):
            if u.seq is None or self.given_up(u):
                continue
            if now_ns - u.vouched_ns < self.grace_ns:
                continue  # may simply be on its way
            since = max(u.vouched_ns, u.last_ask_ns or 0)
            unit = UnitRef(u.site, u.device)
            if self._empty_at.get(unit, -1) <= since:
                continue  # no empty outbox reported since: it may still be uploading
            if u.last_ask_ns is not None and now_ns - u.last_ask_ns < self.backoff_ns(u.asks):
                continue
            if per_device.get(unit, 0) >= self.per_device:
                continue
            per_device[unit] = per_device.get(unit, 0) + 1
            asks.append(
                EvidenceAsk(u.site, u.device, u.seq, u.event_id, len(u.missing), u.asks + 1)
            )
        return asks


class EvidenceGaps:
    """Feeds the planner from the collector's evidence store; records asks in the store."""

    def __init__(self, store: EvidenceVault, planner: EvidencePlanner | None = None) -> None:
        self.store = store
        self.planner = planner or EvidencePlanner()
        self.summary = GapSummary(0, 0, 0)
        self._reported: set[EventRef] = set()

    def on_heartbeat(self, unit: UnitRef, outbox_depth: int, now_ns: int) -> list[EvidenceAsk]:
        """A unit's heartbeat: check its unfinished events, and say which to ask for again."""
        self.planner.on_heartbeat(unit, outbox_depth, now_ns)
        unfinished = self.store.unfinished(unit, limit=CHECK_LIMIT)
        asks = self.planner.due(unfinished, now_ns)
        for ask in asks:
            self.store.asked(EventRef(ask.site, ask.device, ask.event_id), now_ns)
        for u in unfinished:
            if self.planner.lost(u, now_ns) and u.ref not in self._reported:
                self._reported.add(u.ref)
                log.error(
                    "%s/%s seq %s: %d of %d pictures of event %s never arrived; "
                    "stopped asking the unit after %d attempts",
                    u.site,
                    u.device,
                    u.seq,
                    len(u.missing),
                    u.pictures,
                    u.event_id,
                    u.asks,
                )
        return asks

    def refresh(self, now_ns: int) -> GapSummary:
        """The figures for the status line and the collector's stats (all units)."""
        summary = GapSummary(
            *self.store.missing_counts(now_ns - self.planner.grace_ns, self.planner.max_asks)
        )
        if summary != self.summary and (summary.events or self.summary.events):
            (log.warning if summary.events else log.info)("evidence: %s", summary.line())
        self.summary = summary
        return summary
