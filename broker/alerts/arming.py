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
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from broker.alerts.config import SiteAlerts
from broker.alerts.schedule import Edge, WeeklySchedule
from kernel.units import S
from protocol.alerting import ArmingAudit, ArmingHow, ArmingMode, ArmingState


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
    schedule_seen: int
    rearm_at: int | None = None
    next_change: int | None = None
    next_state: ArmingMode | None = None
    schedule_key: str = ""  # which schedule next_change was computed from

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


@dataclass(frozen=True, slots=True)
class EntryOpened:
    """An entry door opened while the site guards."""

    device: str
    sensor: str
    at: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: delays, the schedule and re-arming are due."""


ArmingInput = Arm | Disarm | EntryOpened | Tick


@dataclass(frozen=True, slots=True)
class EntryExpired:
    """The entry delay ran out without a disarm: the door counts as forced."""

    site: str
    device: str
    sensor: str
    opened_at: int
    deadline: int


@dataclass(frozen=True, slots=True)
class Step:
    state: SiteArming
    audits: tuple[ArmingAudit, ...] = ()
    expired: EntryExpired | None = None
    publish: bool = False  # the retained arming state changed (state, delays or next change)


def schedule_of(config: SiteAlerts) -> WeeklySchedule:
    return WeeklySchedule.of(config.schedule, config.timezone)


def initial(site: str, config: SiteAlerts, now: int) -> Step:
    """First state of a site the collector has not seen: what the schedule says, no delay."""
    sched = schedule_of(config)
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
    )
    state = _with_next(state, sched, now)
    reason = "schedule says armed" if on else "no scheduled armed period now"
    return Step(state, (_audit(None, state, reason),), publish=True)


def step(state: SiteArming, config: SiteAlerts, inp: ArmingInput, now: int) -> Step:
    """Advance time to now (delays, schedule edges), then apply the input."""
    sched = schedule_of(config)
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
            reason = "disarmed by hand"
            if state.state is ArmingMode.PENDING:
                reason = f"disarmed in the entry delay of {state.entry_device}/{state.entry_sensor}"
            state = _to(state, ArmingMode.DISARMED, now, inp.by, inp.how, audits, reason)
            if config.rearm_after_min is not None and sched.is_on(now):
                state = state.model_copy(update={"rearm_at": now + config.rearm_after_min * 60 * S})
    elif isinstance(inp, EntryOpened) and state.state is ArmingMode.ARMED:
        if config.entry_delay_s == 0:
            expired = EntryExpired(state.site, inp.device, inp.sensor, inp.at, inp.at)
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
            )
    state = _with_next(state, sched, now)
    publish = bool(audits) or _published(state) != _published(before)
    return Step(state, tuple(audits), expired, publish)


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
        state, fired = _fire_timer(state, config, sched, audits)
        expired = fired or expired
    return state.model_copy(update={"schedule_seen": max(state.schedule_seen, now)}), expired


def _due_timer(state: SiteArming, now: int) -> int | None:
    if state.state in (ArmingMode.ARMING, ArmingMode.PENDING):
        if state.until is not None and state.until <= now:
            return state.until
    elif state.rearm_at is not None and state.rearm_at <= now:
        return state.rearm_at
    return None


def _fire_timer(
    state: SiteArming, config: SiteAlerts, sched: WeeklySchedule, audits: list[ArmingAudit]
) -> tuple[SiteArming, EntryExpired | None]:
    at = state.until if state.state in (ArmingMode.ARMING, ArmingMode.PENDING) else state.rearm_at
    assert at is not None
    state = state.model_copy(update={"schedule_seen": max(state.schedule_seen, at)})
    if state.state is ArmingMode.ARMING:
        return _to(
            state, ArmingMode.ARMED, at, state.by, state.how, audits, "exit delay over"
        ), None
    if state.state is ArmingMode.PENDING:
        assert state.entry_device is not None and state.entry_sensor is not None
        assert state.entry_opened_at is not None
        expired = EntryExpired(
            state.site, state.entry_device, state.entry_sensor, state.entry_opened_at, at
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
            "rearm_at": None,
        }
    )
    audits.append(_audit(state, new, reason))
    return new


def _audit(before: SiteArming | None, after: SiteArming, reason: str) -> ArmingAudit:
    return ArmingAudit(
        site=after.site,
        at=after.since,
        from_state=before.state if before is not None else None,
        to_state=after.state,
        by=after.by,
        how=after.how,
        reason=reason[:200],
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
    )


@functools.lru_cache(maxsize=256)
def _key(sched: WeeklySchedule) -> str:
    windows = ";".join(f"{','.join(w.days)} {w.start}-{w.end}" for w in sched.windows)
    return f"{sched.zone.key}|{windows}"


def state_at(history: Sequence[ArmingAudit], at: int) -> ArmingMode | None:
    """The arming state at a past moment, from audit records in time order."""
    mode: ArmingMode | None = None
    for record in history:
        if record.at > at:
            break
        mode = record.to_state
    return mode


def disarmed_between(history: Sequence[ArmingAudit], after: int, upto: int) -> bool:
    """Whether someone disarmed in (after, upto]: an entry delay honoured after the fact."""
    return any(after < r.at <= upto and r.to_state is ArmingMode.DISARMED for r in history)
