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
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, ParamSpec

from broker.web.event_index import EventIndex, EventRecord
from broker.web.subscriptions import Pages, Subscription, Update
from broker.web.views import (
    AlertView,
    PictureRef,
    SensorTile,
    SiteView,
    UnitTile,
    alert_view,
    arming_view,
    show_event,
    unit_view,
)
from protocol.models import Event, Heartbeat, Kind, Status

log = logging.getLogger("jaga.web.state")

P = ParamSpec("P")


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
        self._sites: dict[str, SiteView] = {}
        self._index = EventIndex(max_events=max_events, max_pictures=max_pictures)
        self._pages = Pages(queue_size)
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
                unit.sensors.setdefault(name, SensorTile(str(kind)))
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
            if event.kind is not Kind.CHECKPOINT:  # proof of life only, every few minutes
                self._index.add_event(event, now)
            unit = self._unit(event.site, event.device)
            unit.last_seen = max(unit.last_seen or 0, now)
            if unit.online is None:
                unit.online, unit.online_since = True, now
            if event.kind not in (Kind.SYSTEM, Kind.CHECKPOINT):
                show_event(unit, event, at)
            pending, placed = self._index.place_waiting(event)
            for ref in placed:  # pictures that came before their event
                self._maybe_newest_picture(unit, ref)
            self._send_unit(unit)
            if pending or event.cause is not None:
                self._send_alerts_of_event(event.site, event.id)

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
            ref = self._index.add_picture(event_id, sha256, site, device, role, now)
            if ref is None or ref.site is None or ref.device is None:
                return  # known already; or shown once its event (or its site/unit) is known
            unit = self._unit(ref.site, ref.device)
            self._maybe_newest_picture(unit, ref)
            self._send_unit(unit)
            self._send_alerts_of_event(ref.site, event_id)

    @_never_raises
    def on_alert(self, alert: object) -> None:
        """An alert as the engine has it now: an `Alert`, a lifecycle `Change`, or a dict."""
        view = alert_view(alert)
        with self._lock:
            site = self._site(view.site)
            if view.is_open:
                site.alerts[view.id] = view
                self._send(Update(view.site, "alert", self._alert_dict(view)))
            elif site.alerts.pop(view.id, None) is not None:
                self._send(Update(view.site, "alert-gone", {"id": view.id, "state": view.state}))

    def on_changes(self, changes: object) -> None:
        """What one alert-engine call decided (broker.alerts.changes): its alerts and arming."""
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
            s.arming = arming_view(state, self._clock())
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
            ids = {event_id, self._index.cause_of(event_id)}
            return [a for s in self._sites.values() for a in s.alerts.values() if a.event_id in ids]

    def caused_by(self, event_id: str) -> list[Event]:
        """Events (the camera's) that name event_id as their cause, as far as the page knows."""
        with self._lock:
            return self._index.caused_by(event_id)

    def event(self, event_id: str) -> EventRecord | None:
        with self._lock:
            return self._index.event(event_id)

    def pictures_of(self, event_id: str) -> list[PictureRef]:
        with self._lock:
            return self._index.pictures_of(event_id)

    def picture_sites(self, sha256: str) -> set[str]:
        """Sites whose events this picture belongs to (for access checks)."""
        with self._lock:
            return self._index.picture_sites(sha256)

    # pages ------------------------------------------------------------------------------

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscription:
        with self._lock:
            return self._pages.subscribe(loop)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._pages.unsubscribe(sub)

    def close_all(self) -> None:
        """End every open stream (the server is stopping)."""
        with self._lock:
            self._pages.close_all()

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._pages)

    # internals --------------------------------------------------------------------------

    def _site(self, site: str) -> SiteView:
        s = self._sites.get(site)
        if s is None:
            s = self._sites[site] = SiteView(site)
            self._send(Update(site, "site", self._site_view(s)))
        return s

    def _unit(self, site: str, device: str) -> UnitTile:
        s = self._site(site)
        unit = s.units.get(device)
        if unit is None:
            unit = s.units[device] = UnitTile(site, device)
        return unit

    @staticmethod
    def _maybe_newest_picture(unit: UnitTile, ref: PictureRef) -> None:
        if unit.picture is None or ref.at >= unit.picture.at:
            unit.picture = ref

    def _send_unit(self, unit: UnitTile) -> None:
        if self._pages:  # a tile's view costs as much as checking an event: none for no page
            self._send(Update(unit.site, "unit", unit_view(unit)))

    def _send_alerts_of_event(self, site: str, event_id: str) -> None:
        ids = {event_id, self._index.cause_of(event_id)}
        for a in self._sites[site].alerts.values():
            if a.event_id in ids:
                self._send(Update(site, "alert", self._alert_dict(a)))

    def _send(self, item: Update) -> None:
        self._pages.send(item)

    def _site_view(self, s: SiteView) -> dict[str, Any]:
        return {
            "site": s.site,
            "name": s.name,
            "arming": s.arming,
            "units": [unit_view(u) for _, u in sorted(s.units.items())],
            "alerts": [self._alert_dict(a) for a in s.alerts.values()],
        }

    def _alert_dict(self, alert: AlertView) -> dict[str, Any]:
        data = alert.model_dump()
        data["pictures"] = [p.view() for p in self._index.ordered_pictures(alert.event_id)]
        data["event_url"] = f"/events/{alert.event_id}" if alert.event_id else None
        return data
