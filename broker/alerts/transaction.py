"""One engine call's decisions, staged: the engine's state changed in memory, the writes that
make it durable and the changes to publish, committed together by the engine (or merged
into a batch's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel

from broker.alerts import arming, lifecycle, notifications
from broker.alerts.alert_points import alert_point, arming_point
from broker.alerts.arming import SiteArming, Step, Tick
from broker.alerts.changes import Changes
from broker.alerts.config import AlertsConfig, SiteAlerts
from broker.alerts.engine_state import EngineState
from broker.alerts.lifecycle import Change
from broker.alerts.notifications import NoteWatch
from broker.alerts.rules import SILENT, AlertKey, Clear, Raise, Signal
from broker.alerts.sensor_rules import entry_expired
from broker.alerts.store import Writes, arming_key
from broker.alerts.watches import Watched, WatchKey
from protocol.alerting import DEFAULT_ZONE

W = TypeVar("W", bound=BaseModel)
In = TypeVar("In")


class Transaction:
    """What one call changes, staged for one commit; a `Moment` for the watches' steps."""

    def __init__(
        self, state: EngineState, config: AlertsConfig, now: int, watching_since: int
    ) -> None:
        self.state = state
        self.config = config
        self.now = now
        self.watching_since = watching_since
        self.writes = Writes()
        self.changes = Changes()
        self._republish: set[str] = set()  # sites whose retained arming state changed

    def site(self, site: str) -> SiteAlerts:
        return self.config.site(site)

    # arming ----------------------------------------------------------------------------------

    def panel(self, site: str, zone: str = DEFAULT_ZONE) -> SiteArming:
        """A zone's arming state brought up to now (created on first sight)."""
        state = self.state.panel(site, zone)
        config = self.config.site(site)
        if state is None:
            self.apply(arming.initial(site, config, self.now, zone))
        elif arming.quiet(state, config, self.now):
            return state  # nothing due: the usual event, spared a step
        else:
            self.apply(arming.step(state, config, Tick(), self.now))
        panel = self.state.panel(site, zone)
        assert panel is not None
        return panel

    def panels(self, site: str) -> list[SiteArming]:
        """Every configured zone of the site, brought up to now."""
        return [self.panel(site, zone) for zone in self.config.site(site).zone_names()]

    def apply(self, step: Step) -> None:
        site = step.state.site
        self.state.keep_panel(step.state)
        if step.publish or step.audits or step.expired:
            self.writes.arming[arming_key(site, step.state.zone)] = step.state
        if step.publish:
            self._republish.add(site)
        for audit in step.audits:
            self.writes.audits.append(audit)
            self.changes.audits.append(audit)
            self.changes.points.append(arming_point(audit))
            self.state.remember(audit)
        if step.expired is not None:
            zone = self.config.site(site).zone
            self.signals([entry_expired(step.expired, zone, self.now)])

    def finish(self) -> Changes:
        """The call's changes, with the retained arming message of each site that changed."""
        while self._republish:
            sites = sorted(self._republish)
            self._republish.clear()
            for site in sites:
                config = self.config.site(site)
                panels = [
                    self.state.panel(site, z) or self.panel(site, z) for z in config.zone_names()
                ]
                self.changes.arming.append(arming.site_wire(site, panels, config))
        return self.changes

    # alerts ----------------------------------------------------------------------------------

    def signals(self, signals: Iterable[Signal]) -> None:
        for signal in signals:
            current = self.state.open_alert(signal.key)
            if isinstance(signal, Raise):
                self.change(signal.key, lifecycle.on_raise(current, signal))
            elif isinstance(signal, Clear):
                cleared = lifecycle.on_clear(current, signal)
                if cleared is not None:
                    self.change(signal.key, cleared)

    def change(self, key: AlertKey, change: Change) -> None:
        alert = change.alert
        self.state.keep_alert(key, alert)
        self.writes.alerts[alert.id] = (key.text, alert)
        if key.rule not in SILENT:  # a silent alert only notifies (its routes)
            self.changes.alerts.append(change)
            self.changes.points.append(alert_point(change))
        note_key = WatchKey.note(key)
        before = self.state.watch(note_key, NoteWatch)
        zone = self.config.site(alert.site).zone
        notify = self.config.notify
        after, note = notifications.decide(
            before or NoteWatch(), change, notify, zone, key.text, self.now
        )
        self._keep(note_key, before, after)
        if note is not None:
            self.changes.notifications.append(note)

    # rule state ------------------------------------------------------------------------------

    def step(self, watched: Watched[W, In], key: WatchKey, item: In) -> None:
        """Move one watch by an input (an event, heartbeat, status, gap change or tick)."""
        assert watched.step is not None, f"{watched.kind} watches are not moved by inputs"
        before = self.state.watch(key, watched.model)
        current = before if before is not None else watched.empty(self.site(key.site))
        moved = watched.step(self, key, current, item)
        if moved is None:
            return
        after, signals = moved
        self._keep(key, before, after, persist=watched.persist(before, after))
        self.signals(signals)

    def keep(self, key: WatchKey, new: BaseModel) -> None:
        """Set a watch's state (written with the call's other writes)."""
        self._keep(key, self.state.watch(key, BaseModel), new)

    def _keep(
        self, key: WatchKey, old: BaseModel | None, new: BaseModel, *, persist: bool = True
    ) -> None:
        """old: the state the step began from (None: none), so it is looked up once."""
        if old is not None and (old is new or old == new):
            return
        self.state.keep_watch(key, new)
        if persist:
            self.writes.watches[key.text] = new  # as JSON at the commit


class Batch:
    """Writes and changes of the calls inside AlertEngine.batch()."""

    def __init__(self) -> None:
        self.writes = Writes()
        self.changes = Changes()
        self.applied: set[tuple[str, str, int]] = set()

    def add(self, txn: Transaction) -> None:
        self.writes.merge(txn.writes)
        self.applied.update((a[0], a[1], a[2]) for a in txn.writes.applied)
        self.changes.extend(txn.changes)
