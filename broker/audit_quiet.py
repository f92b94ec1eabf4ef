"""`audit quiet`: was a unit's window quiet, and can the record prove it?

Silence proves nothing by itself (a dead, paused or cut-off unit is silent too, and a deleted
event leaves silence behind). A window is quiet only when the unit's signed chain covers it
whole, from the checkpoint at or before its start to the checkpoint at or after its end:

- every seq between them is stored, each event is signed by the unit and links to the one
  before (`prev`);
- checkpoints are no further apart than twice the interval the earlier one states, plus
  slack (else the unit was stopped, paused or cut off for that long: a gap);
- every door was closed at the start (the checkpoint before it, and any door event between
  that checkpoint and the start) and none opened inside; the enclosure was not opened;
- no motion while the site was armed (the `arming` measurement the alert engine writes; where
  it has nothing yet, the arming the unit signed into its last checkpoint).

Anything else is named: each gap, and each event that breaks the quiet. Motion while disarmed
and restarts are listed as notes; they do not break it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from zoneinfo import ZoneInfo

from broker.audit import signature_ok
from broker.influx_reader import InfluxReader, quote_string
from broker.ingest import Keys
from kernel.units import S
from protocol.models import STATES, Event, Kind, WireError, parse
from protocol.signing import event_hash

SLACK_NS = 5 * S
"""Added to twice the interval: the loop wakes a little late, the pause that ends a gap is
longer than a scheduling hiccup."""
GUARDING = frozenset({"armed", "pending"})
"""Arming states (as a checkpoint states them) in which motion is an intrusion."""
DOOR_OPEN = frozenset({"open", "held-open"})

_Clock = Callable[[int], str]
"""ns since the epoch -> the instant as a person of the site reads it."""


@dataclass(frozen=True, slots=True)
class Window:
    """What to judge: one unit between two instants (ns since the epoch)."""

    site: str
    device: str
    start_ns: int
    end_ns: int
    slack_ns: int = SLACK_NS


@dataclass
class QuietReport:
    """The verdict; times stay ns, `lines` renders them in the site's zone."""

    window: Window
    gaps: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    widest_ns: int = 0
    """The longest stretch between two checkpoints."""
    allowed_ns: int = 0
    """The longest stretch allowed (from the checkpoints' own intervals)."""

    @property
    def quiet(self) -> bool:
        return not self.gaps and not self.events


def judge(
    window: Window,
    events: Iterable[Event],
    arming: list[tuple[int, bool]],
    problems: Iterable[str] = (),
    zone: dt.tzinfo = dt.UTC,
) -> QuietReport:
    """The verdict on verified events (the unit's chain from the checkpoint at or before the
    window's start to the one at or after its end, as stored) and the site's arming changes
    (time ns, guarding), oldest first. `problems`: stored events that failed verification."""
    report = QuietReport(window)
    when = _clock(zone)
    report.gaps.extend(problems)
    chain = _one_per_seq(events, report)
    if not chain:
        report.gaps.append("no event of the unit is stored around the window")
        return report
    report.first_seq, report.last_seq = chain[0].seq, chain[-1].seq
    _links(chain, report, when)
    _spacing(chain, report, when)
    _doors_and_motion(chain, arming, report, when)
    return report


def _one_per_seq(events: Iterable[Event], report: QuietReport) -> list[Event]:
    by_seq: dict[int, Event] = {}
    for event in sorted(events, key=lambda e: e.seq):
        seen = by_seq.get(event.seq)
        if seen is None:
            by_seq[event.seq] = event
        elif event_hash(seen) != event_hash(event):
            report.gaps.append(f"seq {event.seq}: stored twice with different content (a fork)")
    return list(by_seq.values())


def _links(chain: list[Event], report: QuietReport, when: _Clock) -> None:
    """Every seq present, every event linked to the one before."""
    for before, after in pairwise(chain):
        if after.seq > before.seq + 1:
            first, last = before.seq + 1, after.seq - 1
            report.gaps.append(
                f"seq {first}..{last} missing ({last - first + 1} events between "
                f"{when(before.ts)} and {when(after.ts)})"
            )
        elif after.prev != event_hash(before):
            report.gaps.append(f"seq {after.seq}: does not link to seq {before.seq}")


def _spacing(chain: list[Event], report: QuietReport, when: _Clock) -> None:
    """Checkpoints at each end of the window and never too far apart between."""
    w = report.window
    marks = [e for e in chain if e.kind is Kind.CHECKPOINT]
    report.checkpoints = len(marks)
    if not marks or marks[0].ts > w.start_ns:
        report.gaps.append(
            f"no checkpoint at or before the window's start ({when(w.start_ns)}): how the "
            "doors stood then is not vouched for"
        )
    for a, b in pairwise(marks):
        assert a.checkpoint is not None
        allowed = 2 * a.checkpoint.interval_s * S + w.slack_ns
        report.allowed_ns = max(report.allowed_ns, allowed)
        # Same boot: the monotonic clock, which no clock step moves; across a restart the
        # wall clock is all the two have in common.
        apart = b.mono_ns - a.mono_ns if a.boot_id == b.boot_id else b.ts - a.ts
        report.widest_ns = max(report.widest_ns, apart)
        if apart > allowed and b.ts >= w.start_ns and a.ts <= w.end_ns:
            restart = " (the unit restarted)" if a.boot_id != b.boot_id else ""
            report.gaps.append(
                f"no checkpoint for {_span(apart)} between {when(a.ts)} and {when(b.ts)} "
                f"(allowed {_span(allowed)}){restart}: the unit was stopped, paused or cut off"
            )
    if marks and marks[-1].ts < w.end_ns:
        last = marks[-1]
        assert last.checkpoint is not None
        due = last.ts + 2 * last.checkpoint.interval_s * S + w.slack_ns
        report.gaps.append(
            f"no checkpoint at or after the window's end ({when(w.end_ns)}): the last is from "
            f"{when(last.ts)}; if the unit is alive one is stored by {when(due)} (ask again "
            "then), else it was stopped, paused or cut off"
        )


def _doors_and_motion(
    chain: list[Event], arming: list[tuple[int, bool]], report: QuietReport, when: _Clock
) -> None:
    w = report.window
    doors: dict[str, tuple[str, str]] = {}
    """door -> (state, what says so), as the chain stands."""
    signed_arming: str | None = None
    began = False
    for event in chain:
        if not began and event.ts >= w.start_ns:
            began = True
            _doors_at_start(doors, report, when)
        if event.ts > w.end_ns:
            break
        inside = began
        if event.kind is Kind.CHECKPOINT and event.checkpoint is not None:
            signed_arming = event.state
            for name, state in event.checkpoint.sensors.items():
                if state in STATES[Kind.DOOR]:
                    was = doors.get(name, ("closed", ""))[0]
                    if inside and state in DOOR_OPEN and was not in DOOR_OPEN:
                        report.events.append(
                            f"door {name} {state} per the checkpoint at {when(event.ts)} "
                            f"(seq {event.seq}), no door event says when it opened"
                        )
                    doors[name] = (state, f"the checkpoint at {when(event.ts)}")
        elif event.kind is Kind.DOOR:
            was = doors.get(event.sensor, ("closed", ""))[0]
            if inside and event.state in DOOR_OPEN and was not in DOOR_OPEN:
                report.events.append(
                    f"door {event.sensor} opened at {when(event.ts)} (seq {event.seq})"
                )
            doors[event.sensor] = (event.state, f"seq {event.seq} at {when(event.ts)}")
        elif inside and event.kind is Kind.TAMPER and event.state == "tampered":
            report.events.append(f"enclosure opened at {when(event.ts)} (seq {event.seq})")
        elif inside and event.kind is Kind.MOTION and event.state == "motion":
            guarding = _guarding(arming, event.ts, signed_arming)
            what = f"motion on {event.sensor} at {when(event.ts)} (seq {event.seq})"
            if guarding is None:
                report.events.append(f"{what}, arming unknown")
            elif guarding:
                report.events.append(f"{what} while armed")
            else:
                report.notes.append(f"{what} while disarmed")
        elif inside and event.kind is Kind.SYSTEM and event.state == "boot":
            report.notes.append(f"unit restarted at {when(event.ts)} (seq {event.seq})")
    if not began:
        _doors_at_start(doors, report, when)


def _doors_at_start(doors: dict[str, tuple[str, str]], report: QuietReport, when: _Clock) -> None:
    for name, (state, source) in sorted(doors.items()):
        if state in DOOR_OPEN:
            report.events.append(
                f"door {name} was {state} when the window began ({when(report.window.start_ns)}"
                f", per {source})"
            )


def _guarding(arming: list[tuple[int, bool]], at_ns: int, signed: str | None) -> bool | None:
    """Whether the site was armed at at_ns: its arming record, else the unit's checkpoint."""
    known = [guarding for t, guarding in arming if t <= at_ns]
    if known:
        return known[-1]
    if signed is None or signed == "unknown":
        return None
    return signed in GUARDING


# -- reading InfluxDB -----------------------------------------------------------------------


@dataclass
class Stored:
    """The unit's verified chain around a window, and what failed verification."""

    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_chain(ql: InfluxReader, keys: Keys, window: Window) -> Stored:
    """The unit's events from its checkpoint at or before the window's start to the one at or
    after its end (the window's own ends where there is none), each checked: it parses, its
    tags are its own, the unit's key signed it, and the stored hash is its hash.

    May raise broker.influx_reader.QueryFailed."""
    unit = f'"site" = {quote_string(window.site)} AND "device" = {quote_string(window.device)}'
    marks = f"{unit} AND \"kind\" = '{Kind.CHECKPOINT.value}'"
    before = ql.rows(
        f'SELECT "seq" FROM "event" WHERE {marks} AND time <= {window.start_ns} '
        "ORDER BY time DESC LIMIT 1"
    )
    after = ql.rows(
        f'SELECT "seq" FROM "event" WHERE {marks} AND time >= {window.end_ns} '
        "ORDER BY time ASC LIMIT 1"
    )
    lo = int(before[0]["time"]) if before else window.start_ns
    hi = int(after[0]["time"]) if after else window.end_ns
    rows = ql.rows(
        f'SELECT "raw", "hash", "seq" FROM "event" WHERE {unit} AND time >= {lo} AND time <= {hi}'
    )
    stored = Stored()
    for row in rows:
        where = f"seq {row.get('seq')}"
        try:
            event = parse(Event, str(row.get("raw", "")).encode())
        except WireError as exc:
            stored.problems.append(f"{where}: unreadable event: {exc}")
            continue
        if (event.site, event.device) != (window.site, window.device):
            stored.problems.append(f"{where}: stored under another unit's tags")
        elif not signature_ok(keys, event):
            stored.problems.append(f"{where}: signature does not verify")
        elif row.get("hash") not in (None, event_hash(event)):
            stored.problems.append(f"{where}: stored hash does not match the event")
        else:
            stored.events.append(event)
    return stored


def read_arming(ql: InfluxReader, window: Window) -> list[tuple[int, bool]]:
    """The site's arming (time ns, guarding) from the last change before the window to its
    end, oldest first. May raise broker.influx_reader.QueryFailed."""
    site = f'"site" = {quote_string(window.site)}'
    before = ql.rows(
        f'SELECT "armed" FROM "arming" WHERE {site} AND time <= {window.start_ns} '
        "ORDER BY time DESC LIMIT 1"
    )
    inside = ql.rows(
        f'SELECT "armed" FROM "arming" WHERE {site} AND time > {window.start_ns} '
        f"AND time <= {window.end_ns}"
    )
    return [(int(r["time"]), bool(r.get("armed"))) for r in [*before, *inside]]


# -- rendering ----------------------------------------------------------------------------


def _clock(zone: dt.tzinfo) -> _Clock:
    def when(ns: int) -> str:
        return dt.datetime.fromtimestamp(ns / S, zone).strftime("%Y-%m-%d %H:%M:%S %Z")

    return when


def _span(ns: int) -> str:
    seconds = round(ns / S)
    return str(dt.timedelta(seconds=seconds))


def lines(report: QuietReport, zone: dt.tzinfo = dt.UTC) -> list[str]:
    """What `audit quiet` prints: the verdict first, then each gap, event and note."""
    w = report.window
    when = _clock(zone)
    head = f"{w.site}/{w.device} from {when(w.start_ns)} to {when(w.end_ns)}"
    out: list[str] = []
    if report.quiet:
        out.append(f"quiet: {head}")
        out.append(
            f"  chain seq {report.first_seq}..{report.last_seq} unbroken, "
            f"{report.checkpoints} checkpoints at most {_span(report.widest_ns)} apart "
            f"(allowed {_span(report.allowed_ns)}), every door closed, no motion while armed"
        )
    else:
        out.append(f"not quiet: {head}")
        out.extend(f"  gap: {g}" for g in report.gaps)
        out.extend(f"  event: {e}" for e in report.events)
    out.extend(f"  note: {n}" for n in report.notes)
    return out


def parse_when(text: str, zone: ZoneInfo, name: str) -> int:
    """ISO 8601 with a zone, or without one in the site's zone; ns since the epoch.

    Raises ValueError with a message fit for the person who typed it."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{name} {text!r}: use ISO 8601, e.g. 2026-11-27T22:00:00+07:00, or "
            "2026-11-27T22:00 in the site's own time zone"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return int(when.timestamp()) * S + when.microsecond * 1000
