"""Settle: what a checked batch comes to, as data. Builds; writes nothing.

The points to store, the events whose pictures they vouch for, the dead letters to publish,
the heartbeats to plan asks from, and the figures to count: `service.Collector._finish` does the
rest in order.
"""

from __future__ import annotations

import logging
import re
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
    """Count a stored batch, and log what it stored: one line per unit (stored_lines)."""
    stats.batches += 1
    stats.received += len(outcomes)
    stored: list[Event] = []
    for _, o in outcomes:
        if isinstance(o, Accepted) and isinstance(o.message, Event):
            stored.append(o.message)
        elif isinstance(o, Duplicate):
            stats.duplicates += 1
        elif isinstance(o, Rejected):
            stats.rejected += 1
            stats.integrity += int(o.is_integrity)
            stats.by_reason[o.reason.value] = stats.by_reason.get(o.reason.value, 0) + 1
    stats.stored_events += len(stored)
    if stored and log.isEnabledFor(logging.INFO):
        for line in stored_lines(stored):
            log.info("%s", line)


def stored_lines(events: list[Event]) -> list[str]:
    """The `stored` lines of one batch, a unit a line, in the order the units came:
    `stored <site>/<device> seq=<n> <kind> <sensor> <state>` for a unit's one event, and
    `stored <site>/<device> seq=<a>..<b>,<c> (<n> events)` for several (runs of seqs). At
    10,000 events/s a line per event was a tenth of the collector's time, and as much again
    for journald."""
    by_unit: dict[tuple[str, str], list[Event]] = {}
    for e in events:
        by_unit.setdefault((e.site, e.device), []).append(e)
    lines = []
    for (site, device), own in by_unit.items():
        if len(own) == 1:
            e = own[0]
            lines.append(f"stored {site}/{device} seq={e.seq} {e.kind} {e.sensor} {e.state}")
        else:
            runs = _runs(sorted(e.seq for e in own))
            lines.append(f"stored {site}/{device} seq={runs} ({len(own)} events)")
    return lines


STORED_LINE = re.compile(
    r"\bstored (?P<site>[a-z0-9-]+)/(?P<device>[a-z0-9-]+) seq=(?P<seqs>[0-9.,]+)"
)
"""A `stored` line in the collector's log (stored_lines), for the tools that read it back."""


def stored_in(log: str) -> list[tuple[str, str, int]]:
    """(site, device, seq) of every event the `stored` lines of a log name, in order."""
    return [
        (m["site"], m["device"], seq)
        for m in STORED_LINE.finditer(log)
        for seq in seqs_of(m["seqs"])
    ]


def seqs_of(runs: str) -> list[int]:
    """The seqs a `stored` line names: "5..7,9" -> [5, 6, 7, 9]."""
    out: list[int] = []
    for run in runs.split(","):
        first, _, last = run.partition("..")
        out.extend(range(int(first), int(last or first) + 1))
    return out


def _runs(seqs: list[int]) -> str:
    """5,6,7,9 -> "5..7,9" (sorted input)."""
    out: list[str] = []
    start = prev = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == prev + 1:
            prev = seq
            continue
        out.append(str(start) if start == prev else f"{start}..{prev}")
        if seq is not None:
            start = prev = seq
    return ",".join(out)
