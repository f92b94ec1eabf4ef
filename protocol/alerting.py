"""Alerting payloads: retained alerts, the retained arming state of a site, audit records.

Units read `ArmingState` (and keep the last one on disk); Grafana, the guard post and
operators read `Alert`; operators send `OperatorCommand`s.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from protocol.ids import DeviceId, SensorName, SiteId
from protocol.models import MAX_COUNT, MAX_TS_NS, Text, Token, WireModel

Ns = Annotated[int, Field(ge=0, lt=MAX_TS_NS, description="ns since the Unix epoch")]
AlertId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z-]{0,31}$")]
# A person (or "schedule", or a door for an entry delay): printable, no control characters.
OperatorName = Annotated[str, StringConstraints(pattern=r"^\S(?:[^\x00-\x1f\x7f]{0,62}\S)?$")]
# A gettext msgid (English, with {name} fields) and the strings that fill it: readers render
# an alert in their own language from these (broker/i18n.py says how parameters are shown).
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ParamName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Params = Annotated[dict[ParamName, Text], Field(max_length=16)]


class Severity(StrEnum):
    """How loud an alert is: critical wakes people up, warning waits for the morning."""

    CRITICAL = "critical"
    WARNING = "warning"


class AlertState(StrEnum):
    """raised -> acknowledged -> cleared (condition gone) | resolved (by an operator)."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    RESOLVED = "resolved"

    @property
    def is_open(self) -> bool:
        return self in (AlertState.RAISED, AlertState.ACKNOWLEDGED)


class Alert(WireModel):
    """One alert; retained on jaga/v1/<site>/alert/<id> while open, emptied when closed."""

    v: Literal[1] = 1
    id: AlertId
    site: SiteId
    device: DeviceId
    sensor: SensorName | None = Field(
        default=None, description="door, PIR, camera, post; or the condition (disk, cpu, ...)"
    )
    rule: RuleName
    severity: Severity
    state: AlertState
    latched: bool = Field(description="stays open until an operator resolves it")
    title: Text = Field(description="in English, for readers that do not render msg")
    detail: Text = ""
    msg: MessageId | None = Field(
        default=None, description="the title's message id; rendered with params per reader"
    )
    detail_msg: MessageId | None = Field(default=None, description="the detail's message id")
    note_msg: MessageId | None = Field(
        default=None, description="the note's message id when the condition cleared"
    )
    params: Params = Field(default_factory=dict, description="fill msg, detail_msg, note_msg")
    count: int = Field(
        ge=1, le=MAX_COUNT, description="how many times the rule triggered while open"
    )
    raised_at: Ns
    last_seen: Ns
    acked_at: Ns | None = None
    acked_by: OperatorName | None = None
    closed_at: Ns | None = None
    closed_by: OperatorName | None = Field(
        default=None, description="operator who resolved it; None when the condition cleared"
    )
    note: Text | None = None
    event_id: Token | None = Field(default=None, description="last event that triggered it")


class ArmingMode(StrEnum):
    """Alarm-panel states of a site."""

    DISARMED = "disarmed"
    ARMING = "arming"  # exit delay running
    ARMED = "armed"
    PENDING = "pending"  # an entry door opened: entry delay running

    @property
    def guarding(self) -> bool:
        """Doors and motion count as intrusions (pending: only the non-entry doors)."""
        return self in (ArmingMode.ARMED, ArmingMode.PENDING)


class ArmingHow(StrEnum):
    """What made the arming state change."""

    SCHEDULE = "schedule"
    CLI = "cli"
    MQTT = "mqtt"
    SENSOR = "sensor"  # an entry door started (or ran out) the entry delay
    STARTUP = "startup"  # first state the collector gave a site it had not seen
    WEB = "web"  # an operator on the guard-post page
    TIMER = "timer"  # a bypass or a two-person request ran out


DEFAULT_ZONE = "default"
"""The zone of every sensor that no configured zone lists (a site without zones has only it)."""
ZoneName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")]


class AuditKind(StrEnum):
    """What an audit record is about: the zone's state, or an operation that left it as it was."""

    ARMING = "arming"  # the zone's arming state changed
    BYPASS = "bypass"  # a sensor bypassed until `until`
    BYPASS_END = "bypass-end"  # ... no longer (its deadline, a disarm of its zone)
    DISARM_REQUEST = "disarm-request"  # the first of two people asked to disarm
    DISARM_REQUEST_END = "disarm-request-end"  # ... and nobody else asked in time


class Bypass(WireModel):
    """A sensor whose openings raise no forced-door or intrusion until `until` (still stored)."""

    device: DeviceId
    sensor: SensorName
    zone: ZoneName = DEFAULT_ZONE
    by: OperatorName
    reason: Text
    since: Ns
    until: Ns


class DisarmRequest(WireModel):
    """The first of two people asked to disarm a two-person zone; a second must before until."""

    by: OperatorName
    account: OperatorName = Field(description="the login or certificate name that asked")
    at: Ns
    until: Ns


class ZoneArming(WireModel):
    """One zone of a site: its panel state, its pending two-person request, who is in it."""

    zone: ZoneName
    state: ArmingMode
    since: Ns
    by: OperatorName
    how: ArmingHow
    until: Ns | None = None
    two_person: bool = False
    disarm_request: DisarmRequest | None = None
    members: tuple[Annotated[str, StringConstraints(max_length=100)], ...] = Field(
        default=(), max_length=1000, description='"device/sensor" or "device" (all its sensors)'
    )
    next_change: Ns | None = None
    next_state: ArmingMode | None = None


class ArmingState(WireModel):
    """Retained on jaga/v1/<site>/arming; units keep the last one on disk."""

    v: Literal[1] = 1
    site: SiteId
    state: ArmingMode
    since: Ns
    by: OperatorName
    how: ArmingHow
    exit_delay_s: int = Field(ge=0, le=3600)
    entry_delay_s: int = Field(ge=0, le=3600)
    until: Ns | None = Field(
        default=None, description="arming: when it becomes armed; pending: when it alarms"
    )
    entry_device: DeviceId | None = None
    entry_sensor: SensorName | None = None
    next_change: Ns | None = Field(default=None, description="next scheduled transition")
    next_state: ArmingMode | None = None
    zones: tuple[ZoneArming, ...] | None = Field(
        default=None,
        max_length=100,
        description="every zone of the site; the top level is the default zone when it is the "
        "only one, else the most guarding zone (armed > pending > arming > disarmed)",
    )
    bypassed: tuple[Bypass, ...] | None = Field(
        default=None, max_length=1000, description="sensors bypassed now"
    )

    def zone(self, name: str) -> ZoneArming | None:
        return next((z for z in self.zones or () if z.zone == name), None)

    def mode_for(self, device: str, sensor: str, at_ns: int) -> ArmingMode | None:
        """The mode a unit applies to one of its sensors: its zone's (a zone naming the sensor
        wins over one naming its unit; unlisted: the default zone; no zones: the top level);
        None while the sensor is bypassed."""
        for b in self.bypassed or ():
            if (b.device, b.sensor) == (device, sensor) and b.since <= at_ns < b.until:
                return None
        found = self.zone_of(device, sensor)
        return found.state if found is not None else self.state

    def guards_unit(self, device: str) -> bool:
        """Does any zone that may hold this unit's sensors guard now (the default zone holds
        whatever no zone names)? No zones: the site's own state."""
        if not self.zones or not device:
            return self.state.guarding
        mine = f"{device}/"
        return any(
            z.state.guarding
            for z in self.zones
            if z.zone == DEFAULT_ZONE or any(m == device or m.startswith(mine) for m in z.members)
        )

    def zone_of(self, device: str, sensor: str) -> ZoneArming | None:
        """The zone a unit's sensor follows: one naming the sensor wins over one naming its
        unit; unlisted: the default zone; None when the site has no zones (the top level)."""
        best, found = 0, self.zone(DEFAULT_ZONE)
        for z in self.zones or ():
            held = 2 if f"{device}/{sensor}" in z.members else 1 if device in z.members else 0
            if held > best:
                best, found = held, z
        return found


class ArmingAudit(WireModel):
    """One change of a site's arming state: who, when, how and why."""

    v: Literal[1] = 1
    site: SiteId
    at: Ns
    from_state: ArmingMode | None = None
    to_state: ArmingMode
    by: OperatorName
    how: ArmingHow
    reason: Text = ""
    zone: ZoneName = DEFAULT_ZONE
    kind: AuditKind = AuditKind.ARMING
    with_by: OperatorName | None = Field(
        default=None, description="two-person disarm: the first of the two"
    )
    device: DeviceId | None = Field(default=None, description="bypass: the sensor's unit")
    sensor: SensorName | None = None
    until: Ns | None = Field(default=None, description="bypass, disarm request: until when")


class OperatorCommand(WireModel):
    """Payload of jaga/v1/<site>/cmd/<arm|disarm|ack|resolve> (control room, CLI, guard post)."""

    v: Literal[1] = 1
    by: OperatorName
    how: Literal["cli", "mqtt"] = "mqtt"
    alert_id: AlertId | None = Field(default=None, description="ack and resolve: which alert")
    note: Text | None = Field(default=None, description="resolve: what it was")
