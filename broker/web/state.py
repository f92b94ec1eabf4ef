"""What the guard-post page shows, kept current by the collector as messages arrive.

The collector's threads call the `on_*` methods. Each updates the picture of every site under
one lock and hands the changed piece (a unit's tile, an alert, a site's arming) to every open
page through that page's event loop. A page that falls behind is never fed a partial story:
its queue is replaced by one RESYNC and it gets the whole picture again. No `on_*` method
raises: a fault in the page must never stop the collector from storing events.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Concatenate, Literal, ParamSpec

from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.models import Event, Heartbeat, Kind, Status

log = logging.getLogger("jaga.web.state")

P = ParamSpec("P")
UpdateKind = Literal["site", "unit", "alert", "alert-gone", "arming"]
OPEN_ALERT_STATES = frozenset({"raised", "acknowledged"})
CAMERA_OK = frozenset({"recovered", "uncovered", "snapshot"})


class Signal(Enum):
    RESYNC = "resync"  # the page fell behind: send it everything again
    CLOSE = "close"  # the server is stopping


@dataclass(frozen=True, slots=True)
class Update:
    """One changed piece of one site, ready to send as JSON."""

    site: str
    kind: UpdateKind
    data: dict[str, Any]


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

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_ALERT_STATES


@dataclass
class _Sensor:
    kind: str
    state: str | None = None
    since: int | None = None
    seq: int = 0
    last_active: int | None = None


@dataclass
class _Unit:
    site: str
    device: str
    online: bool | None = None
    online_since: int | None = None
    version: str | None = None
    last_seen: int | None = None
    heartbeat_at: int | None = None
    heartbeat_interval_s: int | None = None
    health: dict[str, Any] = field(default_factory=dict)
    sensors: dict[str, _Sensor] = field(default_factory=dict)
    last_motion: tuple[str, int] | None = None
    picture: PictureRef | None = None
    camera: str | None = None


@dataclass
class _Site:
    site: str
    name: str | None = None
    units: dict[str, _Unit] = field(default_factory=dict)
    arming: dict[str, Any] | None = None
    alerts: dict[str, AlertView] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventRecord:
    event: Event
    received: int


class Subscription:
    """One open page's queue of updates, filled from any thread, read in its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Update | Signal] = asyncio.Queue(maxsize)
        self.resyncs = 0

    def _offer(self, item: Update | Signal) -> None:
        """Runs in the page's loop. Full: forget the backlog, ask for a whole fresh picture."""
        if self.queue.full() or item is Signal.CLOSE:
            while not self.queue.empty():
                self.queue.get_nowait()
            if item is not Signal.CLOSE:
                item = Signal.RESYNC
                self.resyncs += 1
        self.queue.put_nowait(item)


def _never_raises(
    method: Callable[Concatenate[LiveState, P], None],
) -> Callable[Concatenate[LiveState, P], None]:
    def guarded(self: LiveState, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception:
            self.faults += 1
            log.exception("guard-post page: %s failed (the collector goes on)", method.__name__)

    functools.update_wrapper(guarded, method)
    return guarded


class LiveState:
    """Every site's units, open alerts, arming and latest pictures, for the page."""

    def __init__(
        self,
        *,
        clock: Callable[[], int] = time.time_ns,
        max_events: int = 5000,
        max_pictures: int = 20_000,
        queue_size: int = 1000,
    ) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._sites: dict[str, _Site] = {}
        self._events: OrderedDict[str, EventRecord] = OrderedDict()
        self._pictures: OrderedDict[str, list[PictureRef]] = OrderedDict()
        self._caused: OrderedDict[str, list[str]] = OrderedDict()  # door event -> camera events
        self._picture_sites: OrderedDict[str, set[str]] = OrderedDict()
        self._subs: list[Subscription] = []
        self.max_events = max_events
        self.max_pictures = max_pictures
        self.queue_size = queue_size
        self.faults = 0

    # what the collector tells us ---------------------------------------------------------

    @_never_raises
    def add_site(self, site: str, name: str | None = None) -> None:
        """A site known before anything arrives (from the registry), with its display name."""
        with self._lock:
            s = self._site(site)
            if name and s.name != name:
                s.name = name
                self._send(Update(site, "site", self._site_view(s)))

    @_never_raises
    def add_unit(self, site: str, device: str, sensors: Iterable[tuple[str, str]] = ()) -> None:
        """A registered unit and its wiring (sensor name, kind): its tile shows from the start."""
        with self._lock:
            unit = self._unit(site, device)
            for name, kind in sensors:
                unit.sensors.setdefault(name, _Sensor(str(kind)))
            self._send_unit(unit)

    def on_message(self, message: Event | Heartbeat | Status) -> None:
        """Any accepted message (broker.ingest.Accepted.message)."""
        if isinstance(message, Event):
            self.on_event(message)
        elif isinstance(message, Heartbeat):
            self.on_heartbeat(message)
        elif isinstance(message, Status):
            self.on_status(message)

    @_never_raises
    def on_event(self, event: Event) -> None:
        """A verified event; older or repeated ones (by seq, per sensor) change nothing shown."""
        now = self._clock()
        at = min(event.ts, now) if event.clock_synced else now
        with self._lock:
            self._events[event.id] = EventRecord(event, now)
            self._events.move_to_end(event.id)
            while len(self._events) > self.max_events:
                self._events.popitem(last=False)
            if event.cause is not None:  # a camera event holding the pictures of its cause
                caused = self._caused.setdefault(event.cause, [])
                if event.id not in caused:
                    caused.append(event.id)
                while len(self._caused) > self.max_events:
                    self._caused.popitem(last=False)
            unit = self._unit(event.site, event.device)
            unit.last_seen = max(unit.last_seen or 0, now)
            if unit.online is None:
                unit.online, unit.online_since = True, now
            if event.kind is not Kind.SYSTEM:
                self._apply_event(unit, event, at)
            pending = self._pictures.get(event.id, [])
            for i, ref in enumerate(pending):  # pictures that came before their event
                if ref.site is None:
                    pending[i] = ref = PictureRef(
                        ref.sha256, ref.event_id, event.site, event.device, ref.role, ref.at
                    )
                    self._index_picture(ref)
                    self._maybe_newest_picture(unit, ref)
            self._send_unit(unit)
            if pending or event.cause is not None:
                self._send_alerts_of_event(event.site, event.id)

    def _apply_event(self, unit: _Unit, event: Event, at: int) -> None:
        sensor = unit.sensors.setdefault(event.sensor, _Sensor(event.kind.value))
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

    @_never_raises
    def on_status(self, status: Status) -> None:
        """Birth (online) or last will (offline) of a unit."""
        now = self._clock()
        with self._lock:
            unit = self._unit(status.site, status.device)
            online = status.state == "online"
            if unit.online != online:
                unit.online, unit.online_since = online, now
            if status.version:
                unit.version = status.version
            unit.last_seen = max(unit.last_seen or 0, now)
            self._send_unit(unit)

    @_never_raises
    def on_heartbeat(self, heartbeat: Heartbeat) -> None:
        now = self._clock()
        with self._lock:
            unit = self._unit(heartbeat.site, heartbeat.device)
            if unit.online is None:
                unit.online, unit.online_since = True, now
            unit.heartbeat_at = now
            unit.heartbeat_interval_s = heartbeat.interval_s
            unit.last_seen = now
            unit.health = {
                "cpu_temp_c": heartbeat.cpu_temp_c,
                "disk_full": heartbeat.disk_full,
                "outbox_depth": heartbeat.outbox_depth,
                "clock_synced": heartbeat.clock_synced,
                "undervoltage": heartbeat.undervoltage,
                "cert_days_left": heartbeat.cert_days_left,
            }
            self._send_unit(unit)

    @_never_raises
    def on_picture(
        self,
        event_id: str,
        sha256: str,
        site: str | None = None,
        device: str | None = None,
        role: str | None = None,
    ) -> None:
        """A picture of event_id (the camera event whose topic it came on) is in the store."""
        now = self._clock()
        with self._lock:
            record = self._events.get(event_id)
            if record is not None:
                site, device = site or record.event.site, device or record.event.device
            refs = self._pictures.setdefault(event_id, [])
            if any(r.sha256 == sha256 for r in refs):
                return
            ref = PictureRef(sha256, event_id, site, device, role, now)
            refs.append(ref)
            self._pictures.move_to_end(event_id)
            while len(self._pictures) > self.max_events:
                self._pictures.popitem(last=False)
            if site is None or device is None:
                return  # shown once its event (or the collector's site/device) is known
            self._index_picture(ref)
            unit = self._unit(site, device)
            self._maybe_newest_picture(unit, ref)
            self._send_unit(unit)
            self._send_alerts_of_event(site, event_id)

    @_never_raises
    def on_alert(self, alert: object) -> None:
        """An alert as the engine has it now: an `Alert`, a lifecycle `Change`, or a dict."""
        view = _alert_view(alert)
        with self._lock:
            site = self._site(view.site)
            if view.is_open:
                site.alerts[view.id] = view
                self._send(Update(view.site, "alert", self._alert_dict(view)))
            elif site.alerts.pop(view.id, None) is not None:
                self._send(Update(view.site, "alert-gone", {"id": view.id, "state": view.state}))

    def on_changes(self, changes: object) -> None:
        """What one alert-engine call decided (broker.alerts.Changes): its alerts and arming."""
        for change in getattr(changes, "alerts", None) or ():
            self.on_alert(change)
        for arming in getattr(changes, "arming", None) or ():
            self.on_arming(getattr(arming, "site", ""), arming)

    @_never_raises
    def on_alert_gone(self, site: str, alert_id: str) -> None:
        """The retained alert was emptied: it is closed."""
        with self._lock:
            s = self._site(site)
            if s.alerts.pop(alert_id, None) is not None:
                self._send(Update(site, "alert-gone", {"id": alert_id, "state": "closed"}))

    @_never_raises
    def on_arming(self, site: str, state: object) -> None:
        """A site's arming: a mode name, an `ArmingState`, or its dict."""
        with self._lock:
            s = self._site(site)
            s.arming = _arming_view(state, self._clock())
            self._send(Update(site, "arming", s.arming))

    # what the page reads -----------------------------------------------------------------

    def snapshot(self, can_see: Callable[[str], bool]) -> dict[str, Any]:
        """Every site this viewer may see, whole."""
        with self._lock:
            sites = [self._site_view(s) for k, s in sorted(self._sites.items()) if can_see(k)]
        return {"now": self._clock(), "sites": sites}

    def alert(self, alert_id: str) -> AlertView | None:
        with self._lock:
            for s in self._sites.values():
                if alert_id in s.alerts:
                    return s.alerts[alert_id]
        return None

    def alerts_of_event(self, event_id: str) -> list[AlertView]:
        """Open alerts raised by this event, or by the event that caused it."""
        with self._lock:
            ids = {event_id, self._cause_of(event_id)}
            return [a for s in self._sites.values() for a in s.alerts.values() if a.event_id in ids]

    def caused_by(self, event_id: str) -> list[Event]:
        """Events (the camera's) that name event_id as their cause, as far as the page knows."""
        with self._lock:
            ids = self._caused.get(event_id, [])
            return [r.event for i in ids if (r := self._events.get(i)) is not None]

    def event(self, event_id: str) -> EventRecord | None:
        with self._lock:
            return self._events.get(event_id)

    def pictures_of(self, event_id: str) -> list[PictureRef]:
        with self._lock:
            return list(self._pictures.get(event_id, []))

    def picture_sites(self, sha256: str) -> set[str]:
        """Sites whose events this picture belongs to (for access checks)."""
        with self._lock:
            return set(self._picture_sites.get(sha256, set()))

    # pages ------------------------------------------------------------------------------

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscription:
        sub = Subscription(loop, self.queue_size)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close_all(self) -> None:
        """End every open stream (the server is stopping)."""
        with self._lock:
            for sub in list(self._subs):
                self._deliver(sub, Signal.CLOSE)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    # internals --------------------------------------------------------------------------

    def _site(self, site: str) -> _Site:
        s = self._sites.get(site)
        if s is None:
            s = self._sites[site] = _Site(site)
            self._send(Update(site, "site", self._site_view(s)))
        return s

    def _unit(self, site: str, device: str) -> _Unit:
        s = self._site(site)
        unit = s.units.get(device)
        if unit is None:
            unit = s.units[device] = _Unit(site, device)
        return unit

    def _index_picture(self, ref: PictureRef) -> None:
        if ref.site is None:
            return
        self._picture_sites.setdefault(ref.sha256, set()).add(ref.site)
        self._picture_sites.move_to_end(ref.sha256)
        while len(self._picture_sites) > self.max_pictures:
            self._picture_sites.popitem(last=False)

    @staticmethod
    def _maybe_newest_picture(unit: _Unit, ref: PictureRef) -> None:
        if unit.picture is None or ref.at >= unit.picture.at:
            unit.picture = ref

    def _send_unit(self, unit: _Unit) -> None:
        self._send(Update(unit.site, "unit", _unit_view(unit)))

    def _cause_of(self, event_id: str) -> str | None:
        record = self._events.get(event_id)
        return record.event.cause if record is not None else None

    def _send_alerts_of_event(self, site: str, event_id: str) -> None:
        ids = {event_id, self._cause_of(event_id)}
        for a in self._sites[site].alerts.values():
            if a.event_id in ids:
                self._send(Update(site, "alert", self._alert_dict(a)))

    def _send(self, item: Update) -> None:
        for sub in list(self._subs):
            self._deliver(sub, item)

    def _deliver(self, sub: Subscription, item: Update | Signal) -> None:
        try:
            sub.loop.call_soon_threadsafe(sub._offer, item)
        except RuntimeError:  # that page's loop is gone
            self._subs.remove(sub)

    def _site_view(self, s: _Site) -> dict[str, Any]:
        return {
            "site": s.site,
            "name": s.name,
            "arming": s.arming,
            "units": [_unit_view(u) for _, u in sorted(s.units.items())],
            "alerts": [self._alert_dict(a) for a in s.alerts.values()],
        }

    def _alert_dict(self, alert: AlertView) -> dict[str, Any]:
        data = alert.model_dump()
        data["pictures"] = [p.view() for p in self._ordered_pictures(alert.event_id)]
        data["event_url"] = f"/events/{alert.event_id}" if alert.event_id else None
        return data

    def _ordered_pictures(self, event_id: str | None) -> list[PictureRef]:
        """The event's own pictures and those of the camera events it caused, each set in the
        order the unit signed it (before, still, after)."""
        if event_id is None:
            return []
        out: list[PictureRef] = []
        for eid in [event_id, *self._caused.get(event_id, [])]:
            refs = list(self._pictures.get(eid, []))
            record = self._events.get(eid)
            announced = list(record.event.snapshot_sha256 or ()) if record else []
            rank = {sha: i for i, sha in enumerate(announced)}
            out += sorted(refs, key=lambda r: (rank.get(r.sha256, len(rank)), r.at))
        return out


_SENSOR_ORDER = {"door": 0, "motion": 1, "tamper": 2, "patrol": 3, "camera": 4}


def _unit_view(u: _Unit) -> dict[str, Any]:
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


def _alert_view(alert: object) -> AlertView:
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


def _arming_view(state: object, now: int) -> dict[str, Any]:
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
    }
