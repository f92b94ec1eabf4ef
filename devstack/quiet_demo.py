"""The demo's proof of quiet: `jaga-collector audit quiet` on three windows chosen from what
the demo stored, each of which must answer the way the data says.

1. A quiet stretch: the longest one, after the site was armed, of a unit that was never
   paused, between two of its door, motion or tamper events (every door closed after the
   first), with a signed checkpoint at or before its start, one at or after its end and
   none further apart between them than the audit allows: audit quiet must say "quiet"
   (exit 0).
2. A door opening: the first one after arming (gudang-01 first), a second either side:
   audit quiet must name it (exit 1).
3. The paused unit's pause, from the whole second after SIGSTOP to the one before SIGCONT:
   audit quiet must name a gap between checkpoints (exit 1). The demo keeps the unit paused
   for at least MIN_PAUSE_S, longer than the audit allows between two checkpoints, so the
   pause is a gap whatever the phase of its heartbeats and checkpoints.

Windows are whole seconds (as a person would type them), kept half a second clear of the
events that bound them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from devstack.stack import DATABASE
from kernel.units import S

if TYPE_CHECKING:
    from devstack.stack import Stack

CHECKPOINT_S = 5
"""The demo units' checkpoint period (agent.toml `checkpoint_s`; the default is 300)."""
AUDIT_SLACK_S = 5
"""`audit quiet --slack`'s default: the audit allows 2 x CHECKPOINT_S + this between two."""
MIN_PAUSE_S = 2 * CHECKPOINT_S + AUDIT_SLACK_S + 2
"""The paused unit stays paused at least this long, so its silence is a gap to the audit."""
LONGEST_NS = (2 * CHECKPOINT_S + AUDIT_SLACK_S) * S
"""The most the audit allows between two of the demo units' checkpoints."""
MARGIN_NS = S // 2
"""How far a window keeps from the events that bound it."""
MIN_QUIET_NS = 3 * S
SENSOR_KINDS = frozenset({"door", "motion", "tamper"})
EN_DASH = "\u2013"

Expect = Literal["quiet", "door", "gap"]


@dataclass(frozen=True, slots=True)
class Seen:
    """One stored event, as the demo reads it back from InfluxDB."""

    device: str
    kind: str
    sensor: str
    state: str
    ts_ns: int


@dataclass
class Night:
    """What the demo did when: it armed the site, paused a unit and resumed it (ns since the
    epoch; None: it did not happen)."""

    paused_device: str = "gudang-02"
    armed_ns: int | None = None
    paused_ns: int | None = None
    resumed_ns: int | None = None

    def long_enough(self, now_ns: int) -> bool:
        """Paused at least MIN_PAUSE_S by now_ns (never paused: False)."""
        return self.paused_ns is not None and now_ns - self.paused_ns >= MIN_PAUSE_S * S


@dataclass(frozen=True, slots=True)
class Ask:
    """One question for `audit quiet` and the answer it must give."""

    device: str
    start_ns: int
    end_ns: int
    expect: Expect
    door: str = ""
    """The door a `door` answer must name."""


def _ceil_s(ns: int) -> int:
    return -(-ns // S) * S


def _floor_s(ns: int) -> int:
    return ns // S * S


def _by_device(events: Iterable[Seen]) -> dict[str, list[Seen]]:
    out: dict[str, list[Seen]] = {}
    for e in sorted(events, key=lambda e: (e.device, e.ts_ns)):
        out.setdefault(e.device, []).append(e)
    return out


def _checkpoints(events: Sequence[Seen]) -> list[int]:
    return [e.ts_ns for e in events if e.kind == "checkpoint"]


def _vouched(marks: Sequence[int], start_ns: int, end_ns: int) -> bool:
    """A checkpoint at or before the start, one at or after the end, and none further apart
    between them than the audit allows (a unit paused or stalled there is not quiet)."""
    before = [t for t in marks if t <= start_ns]
    after = [t for t in marks if t >= end_ns]
    if not before or not after:
        return False
    span = [t for t in marks if before[-1] <= t <= after[0]]
    return all(b - a <= LONGEST_NS for a, b in pairwise(span))


def quiet_window(events: Iterable[Seen], armed_ns: int, skip: Iterable[str] = ()) -> Ask | None:
    """The longest quiet stretch after arming of a unit not in `skip`, or None."""
    skipped = set(skip)
    best: Ask | None = None
    for device, seen in _by_device(events).items():
        marks = _checkpoints(seen)
        if device in skipped or len(marks) < 2:
            continue
        sensors = [e for e in seen if e.kind in SENSOR_KINDS]
        open_now: set[str] = set()
        for i, e in enumerate(sensors):
            if e.kind in ("door", "tamper"):
                if e.state in ("closed", "normal"):
                    open_now.discard(e.sensor)
                else:
                    open_now.add(e.sensor)
            if open_now:
                continue
            following = sensors[i + 1].ts_ns - MARGIN_NS if i + 1 < len(sensors) else marks[-1]
            start = _ceil_s(max(e.ts_ns + MARGIN_NS, armed_ns, marks[0]))
            end = _floor_s(min(following, marks[-1]))
            if end - start < MIN_QUIET_NS or not _vouched(marks, start, end):
                continue
            if best is None or end - start > best.end_ns - best.start_ns:
                best = Ask(device, start, end, "quiet")
    return best


def opening_window(
    events: Iterable[Seen], armed_ns: int, prefer: Sequence[str] = ("gudang-01", "gudang-02")
) -> Ask | None:
    """A second either side of a door opening: the first after arming, of the first unit in
    `prefer` that has one (then any unit), with checkpoints around it as for a quiet window
    (so no gap stands beside the opening); or None."""
    units = _by_device(events)
    order = [d for d in prefer if d in units] + sorted(set(units) - set(prefer))
    for device in order:
        marks = _checkpoints(units[device])
        for e in units[device]:
            if e.kind != "door" or e.state != "open" or e.ts_ns < armed_ns:
                continue
            start, end = _floor_s(e.ts_ns) - S, _floor_s(e.ts_ns) + S
            if _vouched(marks, start, end):
                return Ask(device, start, end, "door", door=e.sensor)
    return None


def pause_window(night: Night) -> Ask | None:
    """The whole seconds inside the pause, or None when there was no pause to speak of."""
    if night.paused_ns is None or night.resumed_ns is None:
        return None
    start, end = _ceil_s(night.paused_ns), _floor_s(night.resumed_ns)
    if end - start < S:
        return None
    return Ask(night.paused_device, start, end, "gap")


_DATE = re.compile(r"\d{4}-\d{2}-\d{2} ")


def verdict(ask: Ask, returncode: int, stdout: str, stderr: str = "") -> tuple[bool, str]:
    """(whether `audit quiet` answered as the data says, what it answered in a few words)."""
    said = [line.strip() for line in stdout.splitlines()]
    gaps = [line.removeprefix("gap: ") for line in said if line.startswith("gap: ")]
    found = [line.removeprefix("event: ") for line in said if line.startswith("event: ")]
    if returncode == 0:
        summary = "quiet"
    elif returncode == 1 and (gaps or found):
        summary = "; ".join([*(f"gap: {g}" for g in gaps), *found])
    else:
        last = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
        summary = f"audit quiet failed: {last}"
    if ask.expect == "quiet":
        right = returncode == 0
    elif ask.expect == "door":
        opened = f"door {ask.door} opened at "
        right = returncode == 1 and any(e.startswith(opened) for e in found)
    else:
        right = returncode == 1 and any(g.startswith("no checkpoint for ") for g in gaps)
    return right, _DATE.sub("", summary)


EXPECTED = {
    "quiet": "quiet",
    "door": "the door opening named",
    "gap": "a gap between checkpoints named",
}


def line(ask: Ask, zone: dt.tzinfo, returncode: int, right: bool, summary: str) -> str:
    """`quiet: gudang-01 02:29:34\u201302:29:42 WIB: quiet (exit 0)` (an en dash between)."""

    def clock(ns: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ns / S, zone)

    start, end = clock(ask.start_ns), clock(ask.end_ns)
    text = (
        f"quiet: {ask.device} {start:%H:%M:%S}{EN_DASH}{end:%H:%M:%S} {end:%Z}: {summary} "
        f"(exit {returncode})"
    )
    return text if right else f"{text}; WRONG: expected {EXPECTED[ask.expect]}"


def read_events(stack: Stack) -> list[Seen]:
    """Every stored event of the demo's site: unit, kind, sensor, state and time."""
    assert stack.influx is not None
    rows = stack.influx.query(
        f'SELECT "state" FROM "event" WHERE "site" = \'{stack.site}\' '
        'GROUP BY "device", "kind", "sensor"',
        db=DATABASE,
    )
    return [
        Seen(str(r["device"]), str(r["kind"]), str(r["sensor"]), str(r["state"]), int(r["time"]))
        for r in rows
    ]


def choose(events: Sequence[Seen], night: Night) -> list[tuple[str, Ask | None]]:
    """The three questions (None where the data holds no such window), each with a label."""
    armed = night.armed_ns or 0
    return [
        ("a quiet stretch", quiet_window(events, armed, skip=[night.paused_device])),
        ("a door opening", opening_window(events, armed)),
        (f"{night.paused_device}'s pause", pause_window(night)),
    ]


def prove(stack: Stack, night: Night) -> bool:
    """Ask `audit quiet` the three questions; print one line each; True if all answered
    right."""
    from provisioning.registry import Registry

    zone = ZoneInfo(Registry(stack.registry).site(stack.site).timezone)
    asks = choose(read_events(stack), night)

    def ask(q: Ask) -> tuple[int, str, str]:
        iso = [dt.datetime.fromtimestamp(t // S, zone).isoformat() for t in (q.start_ns, q.end_ns)]
        site, unit = ("--site", stack.site), ("--device", q.device)
        done = stack.collector_cli("audit", "quiet", *site, *unit, "--from", iso[0], "--to", iso[1])
        return done.returncode, done.stdout, done.stderr

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = [pool.submit(ask, q) if q is not None else None for _, q in asks]
    all_right = True
    for (label, q), answer in zip(asks, answers, strict=True):
        if q is None or answer is None:
            print(f"quiet: no window for {label} in the stored events; WRONG")
            all_right = False
            continue
        returncode, stdout, stderr = answer.result()
        right, summary = verdict(q, returncode, stdout, stderr)
        print(line(q, zone, returncode, right, summary))
        all_right = all_right and right
    return all_right
