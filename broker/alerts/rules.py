"""The alert rules: each a pure function of (its state, an event or a tick, now) -> signals.

A rule says `Raise` (the condition is there, or happened again) or `Clear` (it is gone);
lifecycle.py turns signals into alerts. Conditions are edge-triggered through the rule's
state, so ticks and retained messages seen again after a restart do not count twice.

Times: `now` is the collector's receipt clock. An event's own time (`event_time`) is its
`ts` when the unit's clock is synchronised (a late event from a unit that was cut off is
judged at the moment it happened, against the arming history), else `now`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from broker.alerts import arming
from broker.alerts.arming import EntryExpired, SiteArming, Tick, disarmed_between, state_at
from broker.alerts.config import PostConfig, SiteAlerts, Thresholds
from broker.alerts.schedule import WeeklySchedule
from broker.alerts.wire import ArmingAudit, ArmingMode, Severity
from protocol.models import Event, Heartbeat, Kind, Status

S = 10**9
MINUTE = 60 * S


class Rule(StrEnum):
    FORCED_DOOR = "forced-door"
    DOOR_HELD_OPEN = "door-held-open"
    INTRUSION = "intrusion"
    TAMPER = "tamper"
    UNIT_OFFLINE = "unit-offline"
    INTEGRITY = "integrity"
    PATROL_MISSED = "patrol-missed"
    CAMERA_FAULT = "camera-fault"
    UNIT_HEALTH = "unit-health"
    EVIDENCE_REFUSED = "evidence-refused"


SEVERITY: dict[Rule, Severity] = {
    Rule.FORCED_DOOR: Severity.CRITICAL,
    Rule.DOOR_HELD_OPEN: Severity.WARNING,
    Rule.INTRUSION: Severity.CRITICAL,
    Rule.TAMPER: Severity.CRITICAL,
    Rule.UNIT_OFFLINE: Severity.CRITICAL,
    Rule.INTEGRITY: Severity.CRITICAL,
    Rule.PATROL_MISSED: Severity.WARNING,
    Rule.CAMERA_FAULT: Severity.WARNING,
    Rule.UNIT_HEALTH: Severity.WARNING,
    Rule.EVIDENCE_REFUSED: Severity.CRITICAL,
}


@dataclass(frozen=True, slots=True)
class AlertKey:
    """rule + site + device + sensor: repeated triggers of one key update one open alert."""

    rule: Rule
    site: str
    device: str
    sensor: str | None = None

    @property
    def text(self) -> str:
        return f"{self.rule.value}:{self.site}:{self.device}:{self.sensor or '-'}"

    @classmethod
    def parse(cls, text: str) -> AlertKey:
        rule, site, device, sensor = text.split(":")
        return cls(Rule(rule), site, device, None if sensor == "-" else sensor)

    @property
    def where(self) -> str:
        return f"{self.site}/{self.device}" + (f"/{self.sensor}" if self.sensor else "")


@dataclass(frozen=True, slots=True)
class Raise:
    """The condition is there (or happened again)."""

    key: AlertKey
    title: str
    detail: str
    at: int
    latched: bool = False  # an incident: stays open until an operator resolves it
    event_id: str | None = None

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.key.rule]


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition is gone (ignored by latched alerts)."""

    key: AlertKey
    detail: str
    at: int


Signal = Raise | Clear


class Watch(BaseModel):
    """Base of per-rule state, persisted as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def event_time(event: Event, now: int) -> int:
    """When it happened: the unit's clock if synchronised (never in the future), else now."""
    return min(event.ts, now) if event.clock_synced else now


def local_time(ns: int, zone: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ns // S, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _seconds(ns: int) -> str:
    s = ns // S
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


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
    late = f"; reported {_seconds(now - at)} late" if at < panel.since else ""
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
        f"{_seconds(deadline - at)}{late}"
    )
    return unchanged, [_forced(key, detail, now, event.id)]


def entry_expired(expired: EntryExpired, zone: ZoneInfo, now: int) -> Raise:
    """The entry delay ran out without a disarm."""
    key = AlertKey(Rule.FORCED_DOOR, expired.site, expired.device, expired.sensor)
    detail = (
        f"entry door opened at {local_time(expired.opened_at, zone)}; not disarmed within "
        f"{_seconds(expired.deadline - expired.opened_at)}"
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
    detail = f"open for {_seconds(max(now - after.open_since, 0))} (limit {limit_s:g} s)"
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
    late = f"; reported {_seconds(now - at)} late" if at < panel.since else ""
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


# unit offline --------------------------------------------------------------------------------


class UnitWatch(Watch):
    interval_s: int
    last_beat: int | None = None
    offline: bool = False
    will_at: int | None = None  # a last will not yet followed by a heartbeat or a birth


WILL_GRACE_BEATS = 1
"""Heartbeat intervals a unit has to come back after its last will before it is offline.

Mosquitto publishes the will of every connected unit when it shuts down (a restart,
SIGTERM), and a network blip drops connections that paho makes again a second later: such
a unit publishes its birth within seconds. A unit still unheard one interval after its
will has missed a heartbeat as well, which confirms the will. One interval keeps the will
path inside the `offline_after_beats` (>= 2) intervals of the silence path, which keeps
running meanwhile: an outage is raised within those intervals either way.
"""


def unit_offline(
    watch: UnitWatch,
    key: AlertKey,
    limits: Thresholds,
    item: Heartbeat | Status | Tick,
    now: int,
    watching_since: int,
) -> tuple[UnitWatch, list[Signal]]:
    """No heartbeat for N intervals, or an LWT `offline` not followed by a heartbeat or a birth
    within WILL_GRACE_BEATS intervals (both counted from watching_since at least).

    The will itself raises nothing: a broker restart publishes the will of every unit, and
    they are back a second later. A tick after the grace raises.
    """
    if isinstance(item, Heartbeat):
        after = UnitWatch(interval_s=item.interval_s, last_beat=now)
        return after, [Clear(key, "heartbeat received", now)] if watch.offline else []
    if isinstance(item, Status):
        if item.state == "online":
            after = UnitWatch(interval_s=watch.interval_s, last_beat=now)
            return after, [Clear(key, "unit online again", now)] if watch.offline else []
        if watch.offline or watch.will_at is not None:
            return watch, []  # the retained will seen again: the grace runs from the first
        return watch.model_copy(update={"will_at": now}), []
    if watch.offline:
        return watch, []
    title = f"Unit offline: {key.where}"
    will = ""
    if watch.will_at is not None:
        gone_for = now - watch.will_at
        will = f"the broker lost the unit's connection (last will) {_seconds(gone_for)} ago"
        if now - max(watch.will_at, watching_since) >= WILL_GRACE_BEATS * watch.interval_s * S:
            detail = f"{will}; no heartbeat or birth since"
            return watch.model_copy(update={"offline": True}), [Raise(key, title, detail, now)]
    if watch.last_beat is None:
        return watch, []
    silent_for = now - max(watch.last_beat, watching_since)
    limit = limits.offline_after_beats * watch.interval_s * S
    if silent_for < limit:
        return watch, []
    detail = (
        f"no heartbeat for {_seconds(silent_for)} "
        f"({limits.offline_after_beats} x {watch.interval_s} s)" + (f"; {will}" if will else "")
    )
    return watch.model_copy(update={"offline": True}), [Raise(key, title, detail, now)]


# integrity -----------------------------------------------------------------------------------


class IntegrityLike(Protocol):
    """What the collector knows of a message that failed verification (broker.ingest.Rejected)."""

    @property
    def site(self) -> str | None: ...
    @property
    def device(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def event_id(self) -> str | None: ...


INTEGRITY_REASONS = frozenset(
    {
        "identity-mismatch",
        "unknown-unit",
        "bad-signature",
        "replayed-or-forked",
        "broken-chain",
        "time-out-of-order",
    }
)


def integrity(issue: IntegrityLike, now: int) -> list[Signal]:
    """A bad signature, broken chain, replay or fork: latched, one alert per unit and reason."""
    reason = str(issue.reason)
    if reason not in INTEGRITY_REASONS or not issue.site or not issue.device:
        return []
    key = AlertKey(Rule.INTEGRITY, issue.site, issue.device, reason)
    seq = f" (seq {issue.seq})" if issue.seq is not None else ""
    title = f"Integrity: {reason} from {issue.site}/{issue.device}{seq}"
    return [Raise(key, title, issue.detail[:200], now, latched=True, event_id=issue.event_id)]


@dataclass(frozen=True, slots=True)
class GapChange:
    """A change of a unit's missing sequence numbers, as broker.chain reports it."""

    first: int
    last: int
    change: Literal["opened", "closed"]


class GapWatch(Watch):
    missing: list[tuple[int, int, int]] = []  # (first, last, opened_ns)
    reported: bool = False


def seq_gap(
    watch: GapWatch, key: AlertKey, limits: Thresholds, item: GapChange | Tick, now: int
) -> tuple[GapWatch, list[Signal]]:
    """Missing sequence numbers not delivered within the timeout; clears when all arrive."""
    if isinstance(item, GapChange):
        if item.change == "opened":
            missing = [*watch.missing, (item.first, item.last, now)]
        else:
            missing = _fill(watch.missing, item.first, item.last)
        after = GapWatch(missing=sorted(missing), reported=watch.reported)
        if watch.reported and not missing:
            return GapWatch(), [Clear(key, "every missing event arrived", now)]
        return after, []
    if watch.reported or not watch.missing:
        return watch, []
    timeout = limits.gap_timeout_min * MINUTE
    late = [(f, last, opened) for f, last, opened in watch.missing if now - opened >= timeout]
    if not late:
        return watch, []
    first, last, opened = late[0]
    count = sum(b - a + 1 for a, b, _ in watch.missing)
    title = f"Integrity: {count} event(s) missing from {key.site}/{key.device}"
    detail = f"seq {first}-{last} missing for {_seconds(now - opened)}"
    return watch.model_copy(update={"reported": True}), [Raise(key, title, detail, now)]


def _fill(missing: list[tuple[int, int, int]], first: int, last: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for a, b, opened in missing:
        if b < first or a > last:
            out.append((a, b, opened))
            continue
        if a < first:
            out.append((a, first - 1, opened))
        if b > last:
            out.append((last + 1, b, opened))
    return out


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
    detail = f"stalled for {_seconds(now - watch.fault_since)} without recovering"
    return watch.model_copy(update={"reported": True}), [Raise(key, title, detail, now)]


# unit health ---------------------------------------------------------------------------------


class HealthWatch(Watch):
    active: list[str] = []


HEALTH_CONDITIONS = ("disk", "cpu", "power", "clock", "cert")


def unit_health(
    watch: HealthWatch, site: str, device: str, limits: Thresholds, hb: Heartbeat, now: int
) -> tuple[HealthWatch, list[Signal]]:
    """Disk low, CPU hot, undervoltage, clock unsynchronised, certificate expiring: one alert each.

    A figure the heartbeat leaves out keeps the condition as it was; the CPU clears only
    when it has cooled by the hysteresis.
    """
    active = set(watch.active)
    signals: list[Signal] = []
    checks: dict[str, tuple[bool | None, str]] = {
        "disk": _disk(hb, limits),
        "cpu": _cpu(hb, limits, "cpu" in active),
        "power": (hb.undervoltage, "undervoltage reported by the power supply"),
        "clock": (
            False if hb.clock_synced else (True if hb.uptime_s >= limits.clock_grace_s else None),
            f"clock not synchronised after {hb.uptime_s} s of uptime",
        ),
        "cert": (
            hb.cert_days_left <= limits.cert_warn_days if hb.cert_days_left is not None else None,
            f"certificate expires in {hb.cert_days_left} day(s)",
        ),
    }
    titles = {
        "disk": "disk low",
        "cpu": "CPU hot",
        "power": "undervoltage",
        "clock": "clock not synchronised",
        "cert": "certificate expiring",
    }
    for name in HEALTH_CONDITIONS:
        on, detail = checks[name]
        key = AlertKey(Rule.UNIT_HEALTH, site, device, name)
        if on is True and name not in active:
            active.add(name)
            title = f"Unit health: {titles[name]} at {site}/{device}"
            signals.append(Raise(key, title, detail, now))
        elif on is False and name in active:
            active.discard(name)
            signals.append(Clear(key, f"{titles[name]}: back to normal", now))
    return HealthWatch(active=sorted(active)), signals


def _disk(hb: Heartbeat, limits: Thresholds) -> tuple[bool | None, str]:
    if hb.disk_full:
        return True, "disk full"
    if hb.disk_free_mb is None:
        return None, ""
    return hb.disk_free_mb < limits.disk_low_mb, (
        f"{hb.disk_free_mb} MB free (limit {limits.disk_low_mb} MB)"
    )


def _cpu(hb: Heartbeat, limits: Thresholds, hot: bool) -> tuple[bool | None, str]:
    if hb.cpu_temp_c is None:
        return None, ""
    detail = f"CPU at {hb.cpu_temp_c:.1f} °C (limit {limits.cpu_hot_c:g} °C)"
    if hb.cpu_temp_c >= limits.cpu_hot_c:
        return True, detail
    if hot and hb.cpu_temp_c > limits.cpu_hot_c - limits.cpu_hysteresis_c:
        return None, detail
    return False, detail


def evidence_refused(site: str, device: str, detail: str, disk_full: bool, now: int) -> Raise:
    """The collector could not keep a picture a unit signed: its disk (or the store's bound)
    is full, or the unit is over its quota. Latched: someone must make room and resolve it."""
    what = "disk-full" if disk_full else "quota"
    key = AlertKey(Rule.EVIDENCE_REFUSED, site, device, what)
    title = (
        f"Evidence not kept: the collector's disk is full ({site}/{device})"
        if disk_full
        else f"Evidence not kept: {site}/{device} is over its picture quota"
    )
    return Raise(key, title, detail[:200], now, latched=True)
