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
    event_time,
    time_params,
)
from broker.alerts.schedule import WeeklySchedule
from broker.i18n import N_
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
    """A door opens while its zone guards: at once, or after the entry delay for entry doors
    (never while the door is bypassed).

    While `pending`, other entry doors follow the first one; non-entry doors alarm at once.
    An event that happened before the current arming state began (it arrived late, or in
    the same batch as the door that started an entry delay) is judged against the arming
    history: was the site guarding then, and was it disarmed within the entry delay?
    """
    unchanged = arming.Step(panel)
    if event.kind is not Kind.DOOR or event.state != "open":
        return unchanged, []
    at = event_time(event, now)
    if panel.bypass_of(event.device, event.sensor, at) is not None:
        return unchanged, []  # bypassed: stored and shown, but no alarm
    door = config.door(event.device, event.sensor)
    key = AlertKey(Rule.FORCED_DOOR, event.site, event.device, event.sensor)
    zone = config.zone
    mode = state_at(history, at) if at < panel.since else panel.state
    if mode is None or not mode.guarding:
        return unchanged, []
    params = time_params(zone, opened=at) | {"mode_msg": mode.value}
    late = at < panel.since
    if late:
        params["late_for"] = str(now - at)
    if not door.entry:
        detail = (
            N_("opened at {opened_at} while {mode_msg}; reported {late_for} late")
            if late
            else N_("opened at {opened_at} while {mode_msg}")
        )
        return unchanged, [_forced(key, detail, params, now, event.id)]
    if mode is ArmingMode.PENDING:
        return unchanged, []  # follows the entry door that started the delay
    deadline = at + config.entry_delay_s * S
    if at < panel.since and disarmed_between(history, at, deadline):
        return unchanged, []
    if panel.state is ArmingMode.ARMED and (deadline > now or at >= panel.since):
        opened = arming.EntryOpened(event.device, event.sensor, at, event.id)
        done = arming.step(panel, config, opened, now)
        signals: list[Signal] = [entry_expired(done.expired, zone, now)] if done.expired else []
        return done, signals
    if deadline > now:
        return unchanged, []  # another entry door's delay is running: it follows that one
    params["delay_for"] = str(deadline - at)
    detail = (
        N_(
            "entry door opened at {opened_at}; not disarmed within {delay_for}; "
            "reported {late_for} late"
        )
        if late
        else N_("entry door opened at {opened_at}; not disarmed within {delay_for}")
    )
    return unchanged, [_forced(key, detail, params, now, event.id)]


def entry_expired(expired: EntryExpired, zone: ZoneInfo, now: int) -> Raise:
    """The entry delay ran out without a disarm."""
    key = AlertKey(Rule.FORCED_DOOR, expired.site, expired.device, expired.sensor)
    params = time_params(zone, opened=expired.opened_at)
    params["delay_for"] = str(expired.deadline - expired.opened_at)
    detail = N_("entry door opened at {opened_at}; not disarmed within {delay_for}")
    return _forced(key, detail, params, now, expired.event_id)


def _forced(
    key: AlertKey, detail: str, params: dict[str, str], now: int, event_id: str | None
) -> Raise:
    title = N_("Forced door: {where} opened while armed")
    params = params | {"where": key.where}
    return Raise.said(key, title, detail, params, now, latched=True, event_id=event_id)


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
            return DoorWatch(), [Clear.said(key, N_("door closed"), {}, now)] if watch.held else []
        since = watch.open_since if watch.open_since is not None else at - int(limit_s * S)
        after = DoorWatch(open_since=since, held=True)  # held-open from the unit
    else:
        if watch.open_since is None or watch.held or now - watch.open_since < limit_s * S:
            return watch, []
        after = watch.model_copy(update={"held": True})
    if watch.held:
        return after, []
    assert after.open_since is not None
    title = N_("Door held open: {where}")
    detail = N_("open for {open_for} (limit {limit} s)")
    params = {
        "where": key.where,
        "open_for": str(max(now - after.open_since, 0)),
        "limit": f"{limit_s:g}",
    }
    event_id = item.id if isinstance(item, Event) else None
    return after, [Raise.said(key, title, detail, params, now, event_id=event_id)]


# intrusion -----------------------------------------------------------------------------------


def intrusion(
    panel: SiteArming, history: Sequence[ArmingAudit], event: Event, zone: ZoneInfo, now: int
) -> list[Signal]:
    """Motion while armed (not in the exit or entry delay: that is the person at the panel)."""
    if event.kind is not Kind.MOTION or event.state != "motion":
        return []
    at = event_time(event, now)
    if panel.bypass_of(event.device, event.sensor, at) is not None:
        return []
    mode = state_at(history, at) if at < panel.since else panel.state
    if mode is not ArmingMode.ARMED:
        return []
    key = AlertKey(Rule.INTRUSION, event.site, event.device, event.sensor)
    title = N_("Intrusion: motion at {where} while armed")
    params = time_params(zone, motion=at) | {"where": key.where}
    detail = N_("motion at {motion_at}")
    if at < panel.since:
        params["late_for"] = str(now - at)
        detail = N_("motion at {motion_at}; reported {late_for} late")
    return [Raise.said(key, title, detail, params, now, latched=True, event_id=event.id)]


# tamper --------------------------------------------------------------------------------------


def tamper(event: Event, zone: ZoneInfo, now: int) -> list[Signal]:
    """Enclosure opened or camera covered: an incident, latched until resolved."""
    at = event_time(event, now)
    if event.kind is Kind.TAMPER or (
        event.kind is Kind.CAMERA and event.state in ("covered", "uncovered")
    ):
        key = AlertKey(Rule.TAMPER, event.site, event.device, event.sensor)
        if event.state in ("tampered", "covered"):
            params = time_params(zone, tampered=at) | {"where": key.where}
            if event.kind is Kind.TAMPER:
                title = N_("Tamper: enclosure opened at {where}")
                detail = N_("enclosure opened at {tampered_at}")
            else:
                title = N_("Tamper: camera covered at {where}")
                detail = N_("camera covered at {tampered_at}")
            return [Raise.said(key, title, detail, params, now, latched=True, event_id=event.id)]
        params = time_params(zone, back=at) | {"state_msg": event.state}
        return [Clear.said(key, N_("{state_msg} at {back_at}"), params, now)]
    return []


# The sensor states and arming modes alerts name ({state_msg}, {mode_msg}), for translation.
WORDS = (N_("normal"), N_("uncovered"), N_("armed"), N_("pending"))


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
            Clear.said(key, N_("check-in at {checkin_at}"), time_params(zone, checkin=at), now)
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
    title = N_("Patrol missed at {where}")
    params = {
        "tz": zone.key,
        "where": key.where,
        "every": f"{post.every_min:g}",
        "missed": str(missed),
    }
    if watch.last_checkin is not None:
        params["last_at"] = str(watch.last_checkin)
        detail = N_(
            "last check-in {last_at}; a check-in is due every {every} min ({missed} missed)"
        )
    else:
        detail = N_("no check-in seen; a check-in is due every {every} min ({missed} missed)")
    raised = Raise.said(key, title, detail, params, now)
    return watch.model_copy(update={"missed": missed}), [raised]


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
            recovered = Clear.said(key, N_("camera recovered"), {}, now)
            return CameraWatch(), [recovered] if watch.reported else []
        return watch, []
    if watch.fault_since is None or watch.reported or now - watch.fault_since < limit_s * S:
        return watch, []
    title = N_("Camera fault: {where}")
    detail = N_("stalled for {stalled_for} without recovering")
    params = {"where": key.where, "stalled_for": str(now - watch.fault_since)}
    raised = Raise.said(key, title, detail, params, now)
    return watch.model_copy(update={"reported": True}), [raised]
