"""What the guard-post page shows of a unit, an alert, a picture and a site's arming: the live
state's pieces and the JSON-ready dicts made of them (broker.web.state keeps them current)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.models import Event, Kind

OPEN_ALERT_STATES = frozenset({"raised", "acknowledged"})
CAMERA_OK = frozenset({"recovered", "uncovered", "snapshot"})


@dataclass(frozen=True, slots=True)
class PictureRef:
    sha256: str
    event_id: str
    site: str | None
    device: str | None
    role: str | None
    at: int

    @property
    def url(self) -> str:
        return f"/pictures/{self.sha256}.jpg"

    def view(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "url": self.url, "role": self.role, "at": self.at}


class AlertView(BaseModel):
    """The fields of an alert the page shows; whatever else the alert engine adds is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    site: str
    device: str
    sensor: str | None = None
    rule: str
    severity: str
    state: str
    latched: bool = False
    title: str
    detail: str = ""
    count: int = 1
    raised_at: int
    last_seen: int | None = None
    acked_at: int | None = None
    acked_by: str | None = None
    closed_at: int | None = None
    closed_by: str | None = None
    event_id: str | None = None
    note: str | None = None
    msg: str | None = None  # the words to render in the reader's language (broker.i18n)
    detail_msg: str | None = None
    note_msg: str | None = None
    params: dict[str, str] = {}

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_ALERT_STATES


@dataclass
class SensorTile:
    kind: str
    state: str | None = None
    since: int | None = None
    seq: int = 0
    last_active: int | None = None


@dataclass
class UnitTile:
    site: str
    device: str
    online: bool | None = None
    online_since: int | None = None
    version: str | None = None
    last_seen: int | None = None
    heartbeat_at: int | None = None
    heartbeat_interval_s: int | None = None
    health: dict[str, Any] = field(default_factory=dict)
    sensors: dict[str, SensorTile] = field(default_factory=dict)
    last_motion: tuple[str, int] | None = None
    picture: PictureRef | None = None
    camera: str | None = None


@dataclass
class SiteView:
    site: str
    name: str | None = None
    units: dict[str, UnitTile] = field(default_factory=dict)
    arming: dict[str, Any] | None = None
    alerts: dict[str, AlertView] = field(default_factory=dict)


def show_event(unit: UnitTile, event: Event, at: int) -> None:
    """A unit's tile after a verified event stamped `at`; an older one (by seq, per sensor)
    changes only when motion or a patrol was last seen."""
    sensor = unit.sensors.setdefault(event.sensor, SensorTile(event.kind.value))
    sensor.kind = event.kind.value
    if event.kind is Kind.MOTION and event.state == "motion":
        sensor.last_active = max(sensor.last_active or 0, at)
        if unit.last_motion is None or at >= unit.last_motion[1]:
            unit.last_motion = (event.sensor, at)
    if event.kind is Kind.PATROL:
        sensor.last_active = max(sensor.last_active or 0, at)
    if event.seq <= sensor.seq:
        return  # late: a newer state is already shown
    held = sensor.state == "open" and event.state == "held-open"
    if sensor.state != event.state and not held:
        sensor.since = at
    sensor.state = event.state
    sensor.seq = event.seq
    if event.kind is Kind.CAMERA:
        unit.camera = "ok" if event.state in CAMERA_OK else event.state


_SENSOR_ORDER = {"door": 0, "motion": 1, "tamper": 2, "patrol": 3, "camera": 4}


def unit_view(u: UnitTile) -> dict[str, Any]:
    sensors = sorted(u.sensors.items(), key=lambda kv: (_SENSOR_ORDER.get(kv[1].kind, 9), kv[0]))
    return {
        "site": u.site,
        "device": u.device,
        "online": u.online,
        "online_since": u.online_since,
        "version": u.version,
        "last_seen": u.last_seen,
        "heartbeat_at": u.heartbeat_at,
        "heartbeat_interval_s": u.heartbeat_interval_s,
        "health": dict(u.health),
        "sensors": [
            {
                "name": name,
                "kind": s.kind,
                "state": s.state,
                "since": s.since,
                "last_active": s.last_active,
            }
            for name, s in sensors
        ],
        "last_motion": {"sensor": u.last_motion[0], "at": u.last_motion[1]}
        if u.last_motion
        else None,
        "picture": u.picture.view() | {"event_id": u.picture.event_id} if u.picture else None,
        "camera": u.camera,
    }


def alert_view(alert: object) -> AlertView:
    """An `Alert`, a lifecycle `Change` holding one, or a dict, as the page shows it."""
    inner = getattr(alert, "alert", None)  # a lifecycle Change
    if inner is not None:
        alert = inner
    if isinstance(alert, BaseModel):
        data: Any = alert.model_dump(mode="json")
    elif isinstance(alert, Mapping):
        data = dict(alert)
    else:
        raise TypeError(f"not an alert: {type(alert).__name__}")
    try:
        return AlertView.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"alert not shown: {exc.error_count()} problem(s): {exc}") from None


def arming_view(state: object, now: int) -> dict[str, Any]:
    """A mode name, an `ArmingState`, or its dict, as the page shows it."""
    if isinstance(state, Enum):
        state = state.value
    if isinstance(state, str):
        return {"state": state, "since": now, "by": None, "until": None}
    if isinstance(state, BaseModel):
        data: dict[str, Any] = state.model_dump(mode="json")
    elif isinstance(state, Mapping):
        data = dict(state)
    else:
        raise TypeError(f"not an arming state: {type(state).__name__}")
    return {
        "state": str(data["state"]),
        "since": data.get("since"),
        "by": data.get("by"),
        "until": data.get("until"),
        "entry": f"{data['entry_device']}/{data['entry_sensor']}"
        if data.get("entry_device") and data.get("entry_sensor")
        else None,
        "zones": [_zone_view(z) for z in data.get("zones") or ()],
        "bypassed": [
            {k: b.get(k) for k in ("device", "sensor", "zone", "by", "reason", "until")}
            for b in data.get("bypassed") or ()
        ],
    }


def _zone_view(zone: Mapping[str, Any]) -> dict[str, Any]:
    """One zone of a site (#18): its state, and the first of two people's request, if any."""
    request = zone.get("disarm_request") or {}
    return {
        "zone": zone.get("zone"),
        "state": zone.get("state"),
        "by": zone.get("by"),
        "until": zone.get("until"),
        "two_person": bool(zone.get("two_person")),
        "request_by": request.get("by"),
        "request_until": request.get("until"),
    }
