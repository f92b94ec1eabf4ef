"""Rules over what sensors report: forced doors, doors held open, intrusion, tamper, missed
patrols and camera faults (the vocabulary they speak is in rules.py)."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from broker.alerts import arming
from broker.alerts.arming import EntryExpired, SiteArming, Tick, disarmed_between, state_at
from broker.alerts.config import PostConfig, SiteAlerts
from broker.alerts.rules import (
    AlertKey,
    Clear,
    Raise,
    Rule,
    Signal,
    Watch,
    duration,
    event_time,
    local_time,
)
from broker.alerts.schedule import WeeklySchedule
from kernel.units import MINUTE, S
from protocol.alerting import ArmingAudit, ArmingMode
from protocol.models import Event, Kind

# forced door ---------------------------------------------------------------------------------


def forced_door(
    panel: SiteArming,
    config: SiteAlerts,
    history: Sequence[ArmingAudit],
    event: Event,
    now: int,
) -> tuple[arming.Step, list[Signal]]:
    """A door opens while the site guards: at once, or after the entry delay for entry doors.

    While `pending`, other entry doors follow the first one; non-entry doors alarm at once.
    An event that happened before the current arming state began (it arrived late, or in
    the same batch as the door that started an entry delay) is judged against the arming
    history: was the site guarding then, and was it disarmed within the entry delay?
    """
    unchanged = arming.Step(panel)
    if event.kind is not Kind.DOOR or event.state != "open":
        return unchanged, []
    at = event_time(event, now)
    door = config.door(event.device, event.sensor)
    key = AlertKey(Rule.FORCED_DOOR, event.site, event.device, event.sensor)
    zone = config.zone
    mode = state_at(history, at) if at < panel.since else panel.state
    if mode is None or not mode.guarding:
        return unchanged, []
    late = f"; reported {duration(now - at)} late" if at < panel.since else ""
    if not door.entry:
        detail = f"opened at {local_time(at, zone)} while {mode.value}{late}"
        return unchanged, [_forced(key, detail, now, event.id)]
    if mode is ArmingMode.PENDING:
        return unchanged, []  # follows the entry door that started the delay
    deadline = at + config.entry_delay_s * S
    if at < panel.since and disarmed_between(history, at, deadline):
        return unchanged, []
    if panel.state is ArmingMode.ARMED and (deadline > now or at >= panel.since):
        opened = arming.EntryOpened(event.device, event.sensor, at)
        done = arming.step(panel, config, opened, now)
        signals: list[Signal] = [entry_expired(done.expired, zone, now)] if done.expired else []
        return done, signals
    if deadline > now:
        return unchanged, []  # another entry door's delay is running: it follows that one
    detail = (
        f"entry door opened at {local_time(at, zone)}; not disarmed within "
        f"{duration(deadline - at)}{late}"
    )
    return unchanged, [_forced(key, detail, now, event.id)]


def entry_expired(expired: EntryExpired, zone: ZoneInfo, now: int) -> Raise:
    """The entry delay ran out without a disarm."""
    key = AlertKey(Rule.FORCED_DOOR, expired.site, expired.device, expired.sensor)
    detail = (
        f"entry door opened at {local_time(expired.opened_at, zone)}; not disarmed within "
        f"{duration(expired.deadline - expired.opened_at)}"
    )
    return _forced(key, detail, now, None)


def _forced(key: AlertKey, detail: str, now: int, event_id: str | None) -> Raise:
    title = f"Forced door: {key.where} opened while armed"
    return Raise(key, title, detail, now, latched=True, event_id=event_id)


# door held open ------------------------------------------------------------------------------


class DoorWatch(Watch):
    open_since: int | None = None
    held: bool = False


def door_held_open(
    watch: DoorWatch, key: AlertKey, limit_s: float, item: Event | Tick, now: int
) -> tuple[DoorWatch, list[Signal]]:
    """Open longer than its limit, armed or not (the unit's `held-open`, or a tick)."""
    if isinstance(item, Event):
        if item.kind is not Kind.DOOR:
            return watch, []
        at = event_time(item, now)
        if item.state == "open":
            since = watch.open_since if watch.open_since is not None else at
            return DoorWatch(open_since=since, held=watch.held), []
        if item.state == "closed":
            return DoorWatch(), [Clear(key, "door closed", now)] if watch.held else []
        since = watch.open_since if watch.open_since is not None else at - int(limit_s * S)
        after = DoorWatch(open_since=since, held=True)  # held-open from the unit
    else:
        if watch.open_since is None or watch.held or now - watch.open_since < limit_s * S:
            return watch, []
        after = watch.model_copy(update={"held": True})
    if watch.held:
        return after, []
    assert after.open_since is not None
    title = f"Door held open: {key.where}"
    detail = f"open for {duration(max(now - after.open_since, 0))} (limit {limit_s:g} s)"
    event_id = item.id if isinstance(item, Event) else None
    return after, [Raise(key, title, detail, now, event_id=event_id)]


# intrusion -----------------------------------------------------------------------------------


def intrusion(
    panel: SiteArming, history: Sequence[ArmingAudit], event: Event, zone: ZoneInfo, now: int
) -> list[Signal]:
    """Motion while armed (not in the exit or entry delay: that is the person at the panel)."""
    if event.kind is not Kind.MOTION or event.state != "motion":
        return []
    at = event_time(event, now)
    mode = state_at(history, at) if at < panel.since else panel.state
    if mode is not ArmingMode.ARMED:
        return []
    key = AlertKey(Rule.INTRUSION, event.site, event.device, event.sensor)
    title = f"Intrusion: motion at {key.where} while armed"
    late = f"; reported {duration(now - at)} late" if at < panel.since else ""
    detail = f"motion at {local_time(at, zone)}{late}"
    return [Raise(key, title, detail, now, latched=True, event_id=event.id)]


# tamper --------------------------------------------------------------------------------------


def tamper(event: Event, zone: ZoneInfo, now: int) -> list[Signal]:
    """Enclosure opened or camera covered: an incident, latched until resolved."""
    at = event_time(event, now)
    if event.kind is Kind.TAMPER or (
        event.kind is Kind.CAMERA and event.state in ("covered", "uncovered")
    ):
        key = AlertKey(Rule.TAMPER, event.site, event.device, event.sensor)
        if event.state in ("tampered", "covered"):
            what = "enclosure opened" if event.kind is Kind.TAMPER else "camera covered"
            title = f"Tamper: {what} at {key.where}"
            detail = f"{what} at {local_time(at, zone)}"
            return [Raise(key, title, detail, now, latched=True, event_id=event.id)]
        return [Clear(key, f"{event.state} at {local_time(at, zone)}", now)]
    return []


# patrol missed -------------------------------------------------------------------------------


class PostWatch(Watch):
    last_checkin: int | None = None
    missed: int = 0


def patrol_missed(
    watch: PostWatch,
    key: AlertKey,
    post: PostConfig,
    zone: ZoneInfo,
    item: Event | Tick,
    now: int,
    watching_since: int,
) -> tuple[PostWatch, list[Signal]]:
    """No check-in within `every_min` (+ grace) while patrols are required; a check-in clears."""
    if isinstance(item, Event):
        if item.kind is not Kind.PATROL or item.state != "checkin":
            return watch, []
        at = event_time(item, now)
        last = max(watch.last_checkin or at, at)
        return PostWatch(last_checkin=last), [
            Clear(key, f"check-in at {local_time(at, zone)}", now)
        ]
    hours = WeeklySchedule(tuple(post.hours), zone)
    period_start = hours.on_since(now) if post.hours else None
    if post.hours and period_start is None:
        return (watch.model_copy(update={"missed": 0}) if watch.missed else watch), []
    reference = max(t for t in (watch.last_checkin, period_start, watching_since) if t is not None)
    every = int(post.every_min * MINUTE)
    first_due = reference + every + int(post.grace_min * MINUTE)
    missed = 0 if now < first_due else 1 + (now - first_due) // every
    if missed <= watch.missed:
        return (watch.model_copy(update={"missed": missed}) if missed < watch.missed else watch), []
    title = f"Patrol missed at {key.where}"
    since = (
        f"last check-in {local_time(watch.last_checkin, zone)}"
        if watch.last_checkin is not None
        else "no check-in seen"
    )
    detail = f"{since}; a check-in is due every {post.every_min:g} min ({missed} missed)"
    return watch.model_copy(update={"missed": missed}), [Raise(key, title, detail, now)]


# camera fault --------------------------------------------------------------------------------


class CameraWatch(Watch):
    fault_since: int | None = None
    reported: bool = False


def camera_fault(
    watch: CameraWatch, key: AlertKey, limit_s: int, item: Event | Tick, now: int
) -> tuple[CameraWatch, list[Signal]]:
    """A camera `fault` not followed by `recovered` within limit_s."""
    if isinstance(item, Event):
        if item.kind is not Kind.CAMERA:
            return watch, []
        at = event_time(item, now)
        if item.state == "fault":
            return (watch if watch.fault_since is not None else CameraWatch(fault_since=at)), []
        if item.state == "recovered":
            return CameraWatch(), [Clear(key, "camera recovered", now)] if watch.reported else []
        return watch, []
    if watch.fault_since is None or watch.reported or now - watch.fault_since < limit_s * S:
        return watch, []
    title = f"Camera fault: {key.where}"
    detail = f"stalled for {duration(now - watch.fault_since)} without recovering"
    return watch.model_copy(update={"reported": True}), [Raise(key, title, detail, now)]
