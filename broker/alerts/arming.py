"""A site's arming state machine, like an alarm panel: disarmed, arming, armed, pending.

Pure: `step(state, config, input, now) -> Step`; every change comes with an audit record.

How the schedule and people share the panel: the schedule acts at its *edges* (18:00 arm,
07:00 disarm), not by holding a level. A manual disarm at 22:00 inside an armed period
therefore holds until the next scheduled transition — the 07:00 disarm (no change) and then
the 18:00 arm; a manual arm at noon holds until the 07:00 disarm after it. With
`rearm_after_min` set, a manual disarm inside a scheduled armed period arms again after that
many minutes (exit delay first), so a forgotten night delivery does not leave the warehouse
open until morning. A schedule edge always cancels a pending re-arm.

Delays: arming always goes through the exit delay (`arming`), by hand or by schedule (0 s
skips it). An entry door opened while armed starts the entry delay (`pending`); a disarm in
time cancels it, otherwise the step reports `EntryExpired` and the site is `armed` again
(the forced-door rule turns that into an alert). Other doors alarm at once (sensor_rules.py).

Zones: one panel per (site, zone), each stepped on its own with the zone's schedule (the site's
unless the zone has one); sensors no zone lists are in zone `default`, so a site without
zones is one panel as before. `site_wire` folds a site's panels into its one retained message.

Operations on a zone's panel: a *bypass* keeps one sensor from alarming until its deadline
or the zone's next disarm (a timer like the delays, persisted with the panel, so it holds
across a restart); a *two-person* zone disarms only when a second, different account asks
within TWO_PERSON_S of the first (the first request is kept, shown and runs out). Every
change and operation is an audit record naming who (a person, `schedule`, or the unit and
sensor for an entry delay).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from broker.alerts.config import SiteAlerts
from broker.alerts.lifecycle import AlertError
from broker.alerts.schedule import Edge, WeeklySchedule
from kernel.units import S
from protocol.alerting import (
    DEFAULT_ZONE,
    ArmingAudit,
    ArmingHow,
    ArmingMode,
    ArmingState,
    AuditKind,
    Bypass,
    DisarmRequest,
    ZoneArming,
)

TWO_PERSON_S = 60
"""How long the first of two people's disarm request waits for the second."""


class ArmingRefused(AlertError):
    """An operation on a panel that is not done (the message says why, for the person)."""


class SiteArming(BaseModel):
    """What the collector keeps about one site's panel (persisted as JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    state: ArmingMode
    since: int
    by: str
    how: ArmingHow
    exit_delay_s: int
    entry_delay_s: int
    until: int | None = None
    entry_device: str | None = None
    entry_sensor: str | None = None
    entry_opened_at: int | None = None
    entry_event: str | None = None
    """The id of the entry door's opening: the trigger of the forced door if the delay runs
    out (its still goes with the alarm's notification, broker/alerts/picture_notes.py)."""
    schedule_seen: int
    rearm_at: int | None = None
    next_change: int | None = None
    next_state: ArmingMode | None = None
    schedule_key: str = ""  # which schedule next_change was computed from
    zone: str = DEFAULT_ZONE
    bypassed: tuple[Bypass, ...] = ()
    disarm_request: DisarmRequest | None = None

    def bypass_of(self, device: str, sensor: str, at: int) -> Bypass | None:
        """The bypass that covers this sensor at `at`, if any."""
        for b in self.bypassed:
            if (b.device, b.sensor) == (device, sensor) and b.since <= at < b.until:
                return b
        return None

    def zone_wire(self, config: SiteAlerts) -> ZoneArming:
        own = config.zone_config(self.zone)
        return ZoneArming(
            zone=self.zone,
            state=self.state,
            since=self.since,
            by=self.by,
            how=self.how,
            until=self.until,
            two_person=own.two_person if own is not None else False,
            disarm_request=self.disarm_request,
            members=tuple(own.members) if own is not None else (),
            next_change=self.next_change,
            next_state=self.next_state,
        )

    def wire(self) -> ArmingState:
        """The retained payload on jaga/v1/<site>/arming."""
        return ArmingState(
            site=self.site,
            state=self.state,
            since=self.since,
            by=self.by,
            how=self.how,
            exit_delay_s=self.exit_delay_s,
            entry_delay_s=self.entry_delay_s,
            until=self.until,
            entry_device=self.entry_device,
            entry_sensor=self.entry_sensor,
            next_change=self.next_change,
            next_state=self.next_state,
        )


@dataclass(frozen=True, slots=True)
class Arm:
    by: str
    how: ArmingHow


@dataclass(frozen=True, slots=True)
class Disarm:
    by: str
    how: ArmingHow
    account: str | None = None  # who authenticated (login or certificate name); None: by


@dataclass(frozen=True, slots=True)
class BypassSensor:
    """Keep one sensor of the zone from alarming until `until` (or the zone's next disarm)."""

    device: str
    sensor: str
    by: str
    how: ArmingHow
    until: int
    reason: str


@dataclass(frozen=True, slots=True)
class LiftBypass:
    """End one sensor's bypass now (the door is repaired); refused when it has none."""

    device: str
    sensor: str
    by: str
    how: ArmingHow


@dataclass(frozen=True, slots=True)
class EntryOpened:
    """An entry door opened while the site guards."""

    device: str
    sensor: str
    at: int
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: delays, the schedule and re-arming are due."""


ArmingInput = Arm | Disarm | BypassSensor | LiftBypass | EntryOpened | Tick


@dataclass(frozen=True, slots=True)
class EntryExpired:
    """The entry delay ran out without a disarm: the door counts as forced."""

    site: str
    device: str
    sensor: str
    opened_at: int
    deadline: int
    event_id: str | None = None
    """The door's opening (the alarm's trigger), when known."""


@dataclass(frozen=True, slots=True)
class Step:
    state: SiteArming
    audits: tuple[ArmingAudit, ...] = ()
    expired: EntryExpired | None = None
    publish: bool = False  # the retained arming state changed (state, delays or next change)


def schedule_of(config: SiteAlerts, zone: str = DEFAULT_ZONE) -> WeeklySchedule:
    return WeeklySchedule.of(config.zone_schedule(zone), config.timezone)


def two_person(config: SiteAlerts, zone: str) -> bool:
    own = config.zone_config(zone)
    return own is not None and own.two_person


def initial(site: str, config: SiteAlerts, now: int, zone: str = DEFAULT_ZONE) -> Step:
    """First state of a zone the collector has not seen: what the schedule says, no delay."""
    sched = schedule_of(config, zone)
    on = sched.is_on(now)
    state = SiteArming(
        site=site,
        state=ArmingMode.ARMED if on else ArmingMode.DISARMED,
        since=now,
        by="schedule" if not sched.empty else "collector",
        how=ArmingHow.STARTUP,
        exit_delay_s=config.exit_delay_s,
        entry_delay_s=config.entry_delay_s,
        schedule_seen=now,
        zone=zone,
    )
    state = _with_next(state, sched, now)
    reason = "schedule says armed" if on else "no scheduled armed period now"
    return Step(state, (_audit(None, state, reason),), publish=True)


def step(state: SiteArming, config: SiteAlerts, inp: ArmingInput, now: int) -> Step:
    """Advance time to now (delays, schedule edges, bypass and request deadlines), then apply
    the input; ArmingRefused when the input may not be done (one person twice on a two-person
    zone)."""
    sched = schedule_of(config, state.zone)
    before = state
    audits: list[ArmingAudit] = []
    expired: EntryExpired | None = None
    if (state.exit_delay_s, state.entry_delay_s) != (config.exit_delay_s, config.entry_delay_s):
        state = state.model_copy(
            update={"exit_delay_s": config.exit_delay_s, "entry_delay_s": config.entry_delay_s}
        )
    state, expired = _advance(state, config, sched, now, audits)
    if isinstance(inp, Arm):
        if state.state is ArmingMode.DISARMED:
            state = _begin_arming(state, config, now, inp.by, inp.how, audits, "armed by hand")
        else:
            state = state.model_copy(update={"rearm_at": None})
    elif isinstance(inp, Disarm):
        if state.state is not ArmingMode.DISARMED:
            state = _disarm(state, config, sched, inp, now, audits)
    elif isinstance(inp, BypassSensor):
        state = _bypass(state, inp, now, audits)
    elif isinstance(inp, LiftBypass):
        state = _lift(state, inp, now, audits)
    elif isinstance(inp, EntryOpened) and state.state is ArmingMode.ARMED:
        if config.entry_delay_s == 0:
            expired = EntryExpired(state.site, inp.device, inp.sensor, inp.at, inp.at, inp.event_id)
        else:
            state = _to(
                state,
                ArmingMode.PENDING,
                max(inp.at, state.since),
                f"{inp.device}/{inp.sensor}",
                ArmingHow.SENSOR,
                audits,
                f"entry door {inp.device}/{inp.sensor} opened",
                until=inp.at + config.entry_delay_s * S,
                entry=(inp.device, inp.sensor, inp.at),
                entry_event=inp.event_id,
            )
    state = _with_next(state, sched, now)
    publish = bool(audits) or _published(state) != _published(before)
    return Step(state, tuple(audits), expired, publish)


def quiet(state: SiteArming, config: SiteAlerts, now: int) -> bool:
    """True when time passing to `now` changes nothing of the zone but `schedule_seen` (no
    delay, deadline or schedule edge due, delays as configured), so step(Tick) may be spared.
    The hot path: every event brings its zone's panel up to its time first."""
    if (state.exit_delay_s, state.entry_delay_s) != (config.exit_delay_s, config.entry_delay_s):
        return False
    if _due_timer(state, now) is not None:
        return False
    sched = schedule_of(config, state.zone)
    if state.schedule_key != _key(sched):
        return False
    if sched.empty:
        return state.next_change is None and state.next_state is None
    # None from _with_next: no edge in the nine days it looks ahead, so a weekly schedule
    # has none at all (on around the clock).
    return state.next_change is None or state.next_change > now


def _disarm(
    state: SiteArming,
    config: SiteAlerts,
    sched: WeeklySchedule,
    inp: Disarm,
    now: int,
    audits: list[ArmingAudit],
) -> SiteArming:
    """A disarm by hand; on a two-person zone, the first of two asks and the second does it."""
    first: str | None = None
    if two_person(config, state.zone) and inp.how is not ArmingHow.SCHEDULE:
        account = inp.account or inp.by
        request = state.disarm_request
        if request is None:
            until = now + TWO_PERSON_S * S
            asked = DisarmRequest(by=inp.by, account=account, at=now, until=until)
            state = state.model_copy(update={"disarm_request": asked})
            reason = (
                f"first of two asked to disarm; a second operator must ask within {TWO_PERSON_S} s"
            )
            audits.append(
                _note(state, AuditKind.DISARM_REQUEST, inp.by, inp.how, now, reason, until=until)
            )
            return state
        if request.account == account:
            raise ArmingRefused(
                f"{inp.by} already asked to disarm zone {state.zone} of {state.site}: "
                "a second, different operator must ask (two-person zone)"
            )
        first = request.by
    reason = "disarmed by hand" if first is None else f"two-person disarm, first asked by {first}"
    if state.state is ArmingMode.PENDING:
        reason += f" in the entry delay of {state.entry_device}/{state.entry_sensor}"
    state = _to(state, ArmingMode.DISARMED, now, inp.by, inp.how, audits, reason, with_by=first)
    if config.rearm_after_min is not None and sched.is_on(now):
        state = state.model_copy(update={"rearm_at": now + config.rearm_after_min * 60 * S})
    return state


def _bypass(
    state: SiteArming, inp: BypassSensor, now: int, audits: list[ArmingAudit]
) -> SiteArming:
    """Bypass a sensor (again: the new deadline and reason replace the old)."""
    if inp.until <= now:
        raise ArmingRefused("a bypass must last a while: give a duration above zero")
    kept = tuple(b for b in state.bypassed if (b.device, b.sensor) != (inp.device, inp.sensor))
    new = Bypass(
        device=inp.device,
        sensor=inp.sensor,
        zone=state.zone,
        by=inp.by,
        reason=inp.reason[:200],
        since=now,
        until=inp.until,
    )
    state = state.model_copy(update={"bypassed": (*kept, new)})
    audits.append(
        _note(
            state,
            AuditKind.BYPASS,
            inp.by,
            inp.how,
            now,
            inp.reason,
            until=inp.until,
            device=inp.device,
            sensor=inp.sensor,
        )
    )
    return state


def _note(
    state: SiteArming,
    kind: AuditKind,
    by: str,
    how: ArmingHow,
    at: int,
    reason: str,
    **fields: object,
) -> ArmingAudit:
    """An audit record of an operation that left the zone's state as it was."""
    return ArmingAudit.model_validate(
        {
            "site": state.site,
            "at": at,
            "from_state": state.state,
            "to_state": state.state,
            "by": by,
            "how": how,
            "reason": reason[:200],
            "zone": state.zone,
            "kind": kind,
            **fields,
        },
        strict=False,
    )


def _advance(
    state: SiteArming,
    config: SiteAlerts,
    sched: WeeklySchedule,
    now: int,
    audits: list[ArmingAudit],
) -> tuple[SiteArming, EntryExpired | None]:
    """Apply due timers and schedule edges in the order they happened."""
    expired: EntryExpired | None = None
    while True:
        timer = _due_timer(state, now)
        horizon = timer if timer is not None else now
        known = state.schedule_key == _key(sched) and state.next_change is not None
        if sched.empty or (known and state.next_change is not None and state.next_change > horizon):
            edges = []  # the next edge is known to lie ahead: spare the calendar arithmetic
        else:
            edges = sched.edges(state.schedule_seen, horizon)
        if edges and (timer is None or edges[0].at < timer):
            state = _apply_edge(state, config, edges[0], audits)
            continue
        if timer is None:
            break
        state, fired = _fire_timer(state, config, sched, audits, timer)
        expired = fired or expired
    return state.model_copy(update={"schedule_seen": max(state.schedule_seen, now)}), expired


def _due_timer(state: SiteArming, now: int) -> int | None:
    """The earliest timer due by now: a delay, a re-arm, a bypass's or a request's deadline."""
    due: list[int] = []
    if state.state in (ArmingMode.ARMING, ArmingMode.PENDING):
        if state.until is not None:
            due.append(state.until)
    elif state.rearm_at is not None:
        due.append(state.rearm_at)
    due.extend(b.until for b in state.bypassed)
    if state.disarm_request is not None:
        due.append(state.disarm_request.until)
    found = min((t for t in due if t <= now), default=None)
    return found


def _lift(state: SiteArming, inp: LiftBypass, now: int, audits: list[ArmingAudit]) -> SiteArming:
    """End a sensor's bypass before its deadline, recorded with who lifted it."""
    found = next(
        (b for b in state.bypassed if (b.device, b.sensor) == (inp.device, inp.sensor)), None
    )
    if found is None:
        raise ArmingRefused(f"{inp.device}/{inp.sensor} is not bypassed at {state.site}")
    state = state.model_copy(
        update={"bypassed": tuple(b for b in state.bypassed if b is not found)}
    )
    reason = f"bypass lifted by {inp.by}"
    audits.append(
        _note(
            state,
            AuditKind.BYPASS_END,
            inp.by,
            inp.how,
            now,
            reason,
            device=inp.device,
            sensor=inp.sensor,
        )
    )
    return state


def _fire_timer(
    state: SiteArming,
    config: SiteAlerts,
    sched: WeeklySchedule,
    audits: list[ArmingAudit],
    at: int,
) -> tuple[SiteArming, EntryExpired | None]:
    for b in state.bypassed:
        if b.until == at:
            state = state.model_copy(
                update={"bypassed": tuple(x for x in state.bypassed if x is not b)}
            )
            audits.append(_bypass_end(state, b, at, "bypass ran out"))
            return state, None
    request = state.disarm_request
    if request is not None and request.until == at:
        state = state.model_copy(update={"disarm_request": None})
        reason = f"nobody else asked to disarm within {TWO_PERSON_S} s of {request.by}"
        audits.append(
            _note(state, AuditKind.DISARM_REQUEST_END, request.by, ArmingHow.TIMER, at, reason)
        )
        return state, None
    state = state.model_copy(update={"schedule_seen": max(state.schedule_seen, at)})
    if state.state is ArmingMode.ARMING:
        return _to(
            state, ArmingMode.ARMED, at, state.by, state.how, audits, "exit delay over"
        ), None
    if state.state is ArmingMode.PENDING:
        assert state.entry_device is not None and state.entry_sensor is not None
        assert state.entry_opened_at is not None
        expired = EntryExpired(
            state.site,
            state.entry_device,
            state.entry_sensor,
            state.entry_opened_at,
            at,
            state.entry_event,
        )
        reason = f"entry delay over without disarm ({state.entry_device}/{state.entry_sensor})"
        return _to(state, ArmingMode.ARMED, at, state.by, state.how, audits, reason), expired
    state = state.model_copy(update={"rearm_at": None})
    if state.state is ArmingMode.DISARMED and sched.is_on(at):
        reason = f"manual disarm ran out after {config.rearm_after_min} min"
        return _begin_arming(
            state, config, at, "schedule", ArmingHow.SCHEDULE, audits, reason
        ), None
    return state, None


def _apply_edge(
    state: SiteArming, config: SiteAlerts, edge: Edge, audits: list[ArmingAudit]
) -> SiteArming:
    state = state.model_copy(update={"schedule_seen": edge.at, "rearm_at": None})
    if edge.on and state.state is ArmingMode.DISARMED:
        return _begin_arming(
            state, config, edge.at, "schedule", ArmingHow.SCHEDULE, audits, "scheduled arming"
        )
    if not edge.on and state.state is not ArmingMode.DISARMED:
        return _to(
            state,
            ArmingMode.DISARMED,
            edge.at,
            "schedule",
            ArmingHow.SCHEDULE,
            audits,
            "scheduled disarming",
        )
    return state


def _begin_arming(
    state: SiteArming,
    config: SiteAlerts,
    at: int,
    by: str,
    how: ArmingHow,
    audits: list[ArmingAudit],
    reason: str,
) -> SiteArming:
    if config.exit_delay_s == 0:
        return _to(state, ArmingMode.ARMED, at, by, how, audits, reason)
    until = at + config.exit_delay_s * S
    return _to(state, ArmingMode.ARMING, at, by, how, audits, reason, until=until)


def _to(
    state: SiteArming,
    mode: ArmingMode,
    at: int,
    by: str,
    how: ArmingHow,
    audits: list[ArmingAudit],
    reason: str,
    *,
    until: int | None = None,
    entry: tuple[str, str, int] | None = None,
    entry_event: str | None = None,
    with_by: str | None = None,
) -> SiteArming:
    new = state.model_copy(
        update={
            "state": mode,
            "since": at,
            "by": by,
            "how": how,
            "until": until,
            "entry_device": entry[0] if entry else None,
            "entry_sensor": entry[1] if entry else None,
            "entry_opened_at": entry[2] if entry else None,
            "entry_event": entry_event if entry else None,
            "rearm_at": None,
        }
    )
    audits.append(_audit(state, new, reason, with_by))
    if mode is ArmingMode.DISARMED:  # a disarm ends the zone's bypasses and request
        for b in new.bypassed:
            audits.append(_bypass_end(new, b, at, f"the zone was disarmed by {by}"))
        new = new.model_copy(update={"bypassed": (), "disarm_request": None})
    return new


def _bypass_end(state: SiteArming, b: Bypass, at: int, reason: str) -> ArmingAudit:
    how = ArmingHow.TIMER if at == b.until else state.how
    by = b.by if at == b.until else state.by
    return _note(state, AuditKind.BYPASS_END, by, how, at, reason, device=b.device, sensor=b.sensor)


def _audit(
    before: SiteArming | None, after: SiteArming, reason: str, with_by: str | None = None
) -> ArmingAudit:
    return ArmingAudit(
        site=after.site,
        at=after.since,
        from_state=before.state if before is not None else None,
        to_state=after.state,
        by=after.by,
        how=after.how,
        reason=reason[:200],
        zone=after.zone,
        with_by=with_by,
    )


def _with_next(state: SiteArming, sched: WeeklySchedule, now: int) -> SiteArming:
    key = _key(sched)
    if sched.empty:
        return state.model_copy(
            update={"next_change": None, "next_state": None, "schedule_key": key}
        )
    if state.schedule_key == key and state.next_change is not None and state.next_change > now:
        return state
    edge = sched.next_edge(now)
    update: dict[str, object] = {"next_change": None, "next_state": None, "schedule_key": key}
    if edge is not None:
        mode = ArmingMode.ARMED if edge.on else ArmingMode.DISARMED
        update |= {"next_change": edge.at, "next_state": mode}
    return state.model_copy(update=update)


def _published(state: SiteArming) -> tuple[object, ...]:
    """The fields of the retained payload (cheaper to compare than building it)."""
    return (
        state.state,
        state.since,
        state.by,
        state.how,
        state.exit_delay_s,
        state.entry_delay_s,
        state.until,
        state.entry_device,
        state.entry_sensor,
        state.next_change,
        state.next_state,
        state.bypassed,
        state.disarm_request,
    )


_GUARD_ORDER = (ArmingMode.DISARMED, ArmingMode.ARMING, ArmingMode.PENDING, ArmingMode.ARMED)


def site_wire(site: str, panels: Sequence[SiteArming], config: SiteAlerts) -> ArmingState:
    """The retained message of a site: its zones, its bypasses, and at the top level the
    default zone when it is the only one, else the most guarding zone."""
    if not panels:
        raise ValueError(f"site {site} has no zone panel")
    top = panels[0]
    if len(panels) > 1:
        top = max(panels, key=lambda p: _GUARD_ORDER.index(p.state))
    wire = top.wire()
    bypassed = tuple(b for p in panels for b in p.bypassed)
    zones = tuple(p.zone_wire(config) for p in panels)
    return wire.model_copy(update={"zones": zones, "bypassed": bypassed})


@functools.lru_cache(maxsize=256)
def _key(sched: WeeklySchedule) -> str:
    windows = ";".join(f"{','.join(w.days)} {w.start}-{w.end}" for w in sched.windows)
    return f"{sched.zone.key}|{windows}"


def state_at(history: Sequence[ArmingAudit], at: int) -> ArmingMode | None:
    """The arming state at a past moment, from one zone's audit records in time order."""
    mode: ArmingMode | None = None
    for record in history:
        if record.at > at:
            break
        mode = record.to_state
    return mode


def disarmed_between(history: Sequence[ArmingAudit], after: int, upto: int) -> bool:
    """Whether someone disarmed in (after, upto]: an entry delay honoured after the fact."""
    return any(
        after < r.at <= upto and r.to_state is ArmingMode.DISARMED and r.from_state != r.to_state
        for r in history
    )
