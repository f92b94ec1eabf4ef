"""Settle: what a checked batch comes to, as data. Builds; writes nothing.

The points to store, the events whose pictures they vouch for, the dead letters to publish,
the heartbeats to plan asks from, and the figures to count: `service.Collector._finish` does the
rest in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from broker import points
from broker.collector.inbound import Inbound
from broker.collector.stats import CollectorStats
from broker.influx import Record
from broker.ingest import Accepted, Duplicate, Outcome, Rejected
from broker.refs import EventRef
from protocol.models import Event, Heartbeat, Status

log = logging.getLogger("jaga.collector")


@dataclass(frozen=True, slots=True)
class Vouch:
    """A stored event signed these pictures."""

    event: EventRef
    sha256s: tuple[str, ...]
    seq: int


@dataclass
class Settled:
    outcomes: list[tuple[Inbound, Outcome]]
    points: list[Record] = field(default_factory=list)
    vouches: list[Vouch] = field(default_factory=list)
    accepted: list[Event | Heartbeat | Status] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    rejected: list[tuple[Inbound, Rejected]] = field(default_factory=list)
    sites: dict[str, str] = field(default_factory=dict)
    """device -> site of the units heard in this batch."""


def settle(outcomes: list[tuple[Inbound, Outcome]]) -> Settled:
    """The points and follow-ups of a batch whose every message has its outcome."""
    s = Settled(outcomes)
    for m, o in outcomes:
        if isinstance(o, Accepted):
            s.sites[o.device] = o.site
            msg = o.message
            s.accepted.append(msg)
            if isinstance(msg, Event):
                assert o.digest is not None
                s.points.append(points.event_line(msg, o.digest, m.payload))
                if msg.snapshot_sha256:
                    ref = EventRef(msg.site, msg.device, msg.id)
                    s.vouches.append(Vouch(ref, msg.snapshot_sha256, msg.seq))
            elif isinstance(msg, Heartbeat):
                s.points.append(points.heartbeat_point(msg, m.received_ns))
                s.heartbeats.append(msg)
            elif isinstance(msg, Status):
                s.points.append(points.status_point(msg, m.received_ns))
        elif isinstance(o, Rejected):
            s.rejected.append((m, o))
            s.points += points.rejection_points(o, m.received_ns)
    return s


def count(stats: CollectorStats, outcomes: list[tuple[Inbound, Outcome]]) -> None:
    stats.batches += 1
    stats.received += len(outcomes)
    for _, o in outcomes:
        if isinstance(o, Accepted) and isinstance(o.message, Event):
            stats.stored_events += 1
            e = o.message
            log.info(
                "stored %s/%s seq=%d %s %s %s", e.site, e.device, e.seq, e.kind, e.sensor, e.state
            )
        elif isinstance(o, Duplicate):
            stats.duplicates += 1
        elif isinstance(o, Rejected):
            stats.rejected += 1
            stats.integrity += int(o.is_integrity)
            stats.by_reason[o.reason.value] = stats.by_reason.get(o.reason.value, 0) + 1
