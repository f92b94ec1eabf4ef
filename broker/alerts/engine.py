"""The alert engine the collector calls: messages and time in, changes to publish out.

No MQTT, no InfluxDB: every call returns `Changes` — retained alert and arming messages,
audit records, notifications and Influx points — and the collector does the I/O. Each call
that changes anything is one SQLite transaction that also keeps its `Changes` in an outbox
until the collector `confirm`s them, so a crash between deciding and publishing is healed by
`pending()` after the restart: retained messages and points are idempotent, notifications
are de-duplicated by id in the Notifier.

One engine per deployment (or per site partition): alert and arming state is not shared
between collectors.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from broker.alerts import arming, lifecycle, notifications, sensor_rules, unit_rules
from broker.alerts.arming import SiteArming, Step, Tick
from broker.alerts.config import AlertsConfig, SiteAlerts
from broker.alerts.lifecycle import AlertClosed, AlertError, Change, ChangeKind, UnknownAlert
from broker.alerts.notifications import NoteWatch, Notification
from broker.alerts.points import InfluxPoint, alert_point, arming_point
from broker.alerts.rules import AlertKey, Clear, Raise, Rule, Signal
from broker.alerts.sensor_rules import CameraWatch, DoorWatch, PostWatch
from broker.alerts.store import AlertStore, Writes
from broker.alerts.unit_rules import (
    GapChange,
    GapWatch,
    HealthWatch,
    IntegrityLike,
    UnitWatch,
)
from protocol import topics
from protocol.alerting import (
    Alert,
    ArmingAudit,
    ArmingHow,
    ArmingState,
    OperatorName,
)
from protocol.ids import InvalidIdentifier, check_id
from protocol.models import Event, Heartbeat, Kind, Status

if TYPE_CHECKING:
    from broker.site_commands import SiteCommandGate

S = 10**9
HOUR = 3600 * S
W = TypeVar("W", bound=BaseModel)
_OPERATOR: TypeAdapter[str] = TypeAdapter(OperatorName)


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication for the collector to make."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


class Changes(BaseModel):
    """What one engine call asks the collector to publish, write and send."""

    model_config = ConfigDict(extra="forbid")

    outbox_id: int | None = None
    alerts: list[Change] = []
    arming: list[ArmingState] = []
    audits: list[ArmingAudit] = []
    notifications: list[Notification] = []
    points: list[InfluxPoint] = []

    def __bool__(self) -> bool:
        return bool(self.alerts or self.arming or self.audits or self.notifications or self.points)

    def messages(self) -> list[Message]:
        """Retained messages, latest per topic: an open alert's JSON, b"" for a closed one."""
        out: dict[str, bytes] = {}
        for change in self.alerts:
            a = change.alert
            out[topics.alert(a.site, a.id)] = a.to_json() if a.state.is_open else b""
        for state in self.arming:
            out[topics.arming(state.site)] = state.to_json()
        return [Message(topic, payload) for topic, payload in out.items()]


class _Txn:
    """What one call changes, staged for one commit."""

    def __init__(self, engine: AlertEngine, now: int) -> None:
        self.e = engine
        self.now = now
        self.writes = Writes()
        self.changes = Changes()

    # arming ----------------------------------------------------------------------------------

    def panel(self, site: str) -> SiteArming:
        """The site's arming state brought up to now (created on first sight)."""
        state = self.e._arming.get(site)
        config = self.e.config.site(site)
        if state is None:
            self.apply(site, arming.initial(site, config, self.now))
        else:
            self.apply(site, arming.step(state, config, Tick(), self.now))
        return self.e._arming[site]

    def apply(self, site: str, step: Step) -> None:
        self.e._arming[site] = step.state
        if step.publish or step.audits or step.expired:
            self.writes.arming[site] = step.state
        if step.publish:
            self.changes.arming.append(step.state.wire())
        for audit in step.audits:
            self.writes.audits.append(audit)
            self.changes.audits.append(audit)
            self.changes.points.append(arming_point(audit))
            self.e._remember(audit)
        if step.expired is not None:
            zone = self.e.config.site(site).zone
            self.signals([sensor_rules.entry_expired(step.expired, zone, self.now)])

    # alerts ----------------------------------------------------------------------------------

    def signals(self, signals: Iterable[Signal]) -> None:
        for signal in signals:
            current = self.e._open.get(signal.key.text)
            if isinstance(signal, Raise):
                self.change(signal.key.text, lifecycle.on_raise(current, signal))
            elif isinstance(signal, Clear):
                cleared = lifecycle.on_clear(current, signal)
                if cleared is not None:
                    self.change(signal.key.text, cleared)

    def change(self, key: str, change: Change) -> None:
        alert = change.alert
        if alert.state.is_open:
            self.e._open[key] = alert
        elif key in self.e._open and self.e._open[key].id == alert.id:
            del self.e._open[key]
        self.writes.alerts[alert.id] = (key, alert)
        self.changes.alerts.append(change)
        self.changes.points.append(alert_point(change))
        name = f"note:{key}"
        before = self.e._get(name, NoteWatch, NoteWatch())
        zone = self.e.config.site(alert.site).zone
        after, note = notifications.decide(
            before, change, self.e.config.notify, zone, key, self.now
        )
        self.watch(name, after)
        if note is not None:
            self.changes.notifications.append(note)

    # rule state ------------------------------------------------------------------------------

    def watch(self, name: str, new: BaseModel, *, persist: bool = True) -> None:
        old = self.e._watches.get(name)
        if old is not None and (old is new or old == new):
            return
        self.e._watches[name] = new
        if persist:
            self.writes.watches[name] = new.model_dump_json()


class GapLike(Protocol):
    """A gap as broker.chain.Gap has it."""

    @property
    def device(self) -> str: ...
    @property
    def first(self) -> int: ...
    @property
    def last(self) -> int: ...
    @property
    def opened_ns(self) -> int: ...


class _Batch:
    """Writes and changes of the calls inside AlertEngine.batch()."""

    def __init__(self) -> None:
        self.writes = Writes()
        self.changes = Changes()
        self.applied: set[tuple[str, str, int]] = set()

    def add(self, txn: _Txn) -> None:
        self.writes.merge(txn.writes)
        self.applied.update((a[0], a[1], a[2]) for a in txn.writes.applied)
        c, t = self.changes, txn.changes
        c.alerts.extend(t.alerts)
        c.arming.extend(t.arming)
        c.audits.extend(t.audits)
        c.notifications.extend(t.notifications)
        c.points.extend(t.points)


class AlertEngine:
    """Runs the rules over everything the collector accepts; one thread calls it."""

    def __init__(
        self,
        config: AlertsConfig,
        store: AlertStore,
        now: int,
        *,
        sites: frozenset[str] | None = None,
        gate: SiteCommandGate | None = None,
    ) -> None:
        """sites: the only sites this engine judges and publishes (its collector's share of
        them); None: every site.
        gate: checks operators' signed site commands; None: the registry's, when the config
        names one (collector.toml's registry_dir), else every site command is refused."""
        self.config = config
        self.sites = sites
        self.gate = gate or _gate_of(config, store)
        self.store = store
        self.watching_since = now + config.resume_grace_s * S
        self._last_prune = 0
        self._batch: _Batch | None = None
        self._load()

    def _owns(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    @contextmanager
    def batch(self) -> Iterator[Changes]:
        """Many calls, one transaction (a collector batch): yields their merged Changes.

        The calls inside still return their own Changes, without an outbox id; publish the
        merged ones after the block, then confirm them. An exception inside writes nothing.
        """
        if self._batch is not None:
            raise RuntimeError("engine batches do not nest")
        current = self._batch = _Batch()
        try:
            yield current.changes
        except BaseException:
            self._batch = None
            self._load()
            raise
        self._batch = None
        if current.changes:
            current.writes.outbox = current.changes.model_dump_json()
        if current.writes:
            current.changes.outbox_id = self._write(current.writes)

    def _load(self) -> None:
        self._applied_hi = self.store.applied_high_water()
        """Per unit, no seq above this was applied: a new event needs no look-up on disk."""
        self._open: dict[str, Alert] = dict(self.store.open_alerts())
        self._arming: dict[str, SiteArming] = {
            site: state for site, state in self.store.arming().items() if self._owns(site)
        }
        self._history: dict[str, list[ArmingAudit]] = {}
        self._watches: dict[str, BaseModel] = {}
        kinds: dict[str, type[BaseModel]] = {
            "door": DoorWatch,
            "unit": UnitWatch,
            "gap": GapWatch,
            "post": PostWatch,
            "camera": CameraWatch,
            "health": HealthWatch,
            "note": NoteWatch,
        }
        for name, body in self.store.watches().items():
            model = kinds.get(name.split(":", 1)[0])
            if model is not None:
                self._watches[name] = model.model_validate_json(body)

    # inputs ----------------------------------------------------------------------------------

    def on_event(self, event: Event, now: int) -> Changes:
        """A verified, new event (an Accepted outcome of broker.ingest)."""
        site, device, sensor = event.site, event.device, event.sensor
        if self._applied(site, device, event.seq):
            return Changes()  # delivered again after a crash: already counted
        txn = _Txn(self, now)
        config = self.config.site(site)
        zone = config.zone
        panel = txn.panel(site)
        if event.kind is Kind.DOOR:
            step, signals = sensor_rules.forced_door(
                panel, config, self._past(site, now), event, now
            )
            txn.apply(site, step)
            txn.signals(signals)
            name = f"door:{site}:{device}:{sensor}"
            key = AlertKey(Rule.DOOR_HELD_OPEN, site, device, sensor)
            watch = self._get(name, DoorWatch, DoorWatch())
            limit = config.held_open_s(device, sensor)
            watch, signals = sensor_rules.door_held_open(watch, key, limit, event, now)
            txn.watch(name, watch)
            txn.signals(signals)
        elif event.kind is Kind.MOTION:
            txn.signals(sensor_rules.intrusion(panel, self._past(site, now), event, zone, now))
        elif event.kind is Kind.TAMPER:
            txn.signals(sensor_rules.tamper(event, zone, now))
        elif event.kind is Kind.CAMERA:
            txn.signals(sensor_rules.tamper(event, zone, now))
            name = f"camera:{site}:{device}:{sensor}"
            key = AlertKey(Rule.CAMERA_FAULT, site, device, sensor)
            cam = self._get(name, CameraWatch, CameraWatch())
            limit_s = config.thresholds.camera_fault_s
            cam, signals = sensor_rules.camera_fault(cam, key, limit_s, event, now)
            txn.watch(name, cam)
            txn.signals(signals)
        elif event.kind is Kind.PATROL:
            post = config.post(device, sensor)
            if post is not None:
                name = f"post:{site}:{device}:{sensor}"
                key = AlertKey(Rule.PATROL_MISSED, site, device, sensor)
                pw = self._get(name, PostWatch, PostWatch())
                pw, signals = sensor_rules.patrol_missed(
                    pw, key, post, zone, event, now, self.watching_since
                )
                txn.watch(name, pw)
                txn.signals(signals)
        if txn.writes:
            txn.writes.applied.append((site, device, event.seq, now))
        return self._commit(txn)

    def on_heartbeat(self, hb: Heartbeat, now: int) -> Changes:
        txn = _Txn(self, now)
        config = self.config.site(hb.site)
        txn.panel(hb.site)
        self._unit(txn, config, hb.site, hb.device, hb)
        name = f"health:{hb.site}:{hb.device}"
        health = self._get(name, HealthWatch, HealthWatch())
        health, signals = unit_rules.unit_health(
            health, hb.site, hb.device, config.thresholds, hb, now
        )
        txn.watch(name, health)
        txn.signals(signals)
        return self._commit(txn)

    def on_status(self, status: Status, now: int) -> Changes:
        txn = _Txn(self, now)
        txn.panel(status.site)
        self._unit(txn, self.config.site(status.site), status.site, status.device, status)
        return self._commit(txn)

    def on_integrity(self, issue: IntegrityLike, now: int) -> Changes:
        """A message that failed verification (broker.ingest.Rejected with is_integrity)."""
        txn = _Txn(self, now)
        txn.signals(unit_rules.integrity(issue, now))
        return self._commit(txn)

    def on_evidence_refused(
        self, site: str, device: str, detail: str, disk_full: bool, now: int
    ) -> Changes:
        """A picture a unit signed could not be kept (broker.evidence.EvidenceRefused)."""
        txn = _Txn(self, now)
        txn.signals([unit_rules.evidence_refused(site, device, detail, disk_full, now)])
        return self._commit(txn)

    def on_gap(
        self, site: str, device: str, first: int, last: int, change: str, now: int
    ) -> Changes:
        """A gap change from ChainBook.commit: (device, first, last, 'opened'|'closed')."""
        if change not in ("opened", "closed"):
            raise ValueError(f"gap change {change!r} is neither 'opened' nor 'closed'")
        txn = _Txn(self, now)
        name = f"gap:{site}:{device}"
        key = AlertKey(Rule.INTEGRITY, site, device, "seq-gap")
        limits = self.config.site(site).thresholds
        watch = self._get(name, GapWatch, GapWatch())
        item = GapChange(first, last, "opened" if change == "opened" else "closed")
        watch, signals = unit_rules.seq_gap(watch, key, limits, item, now)
        txn.watch(name, watch)
        txn.signals(signals)
        return self._commit(txn)

    def tick(self, now: int) -> Changes:
        """Time passed: delays, schedules, held doors, silent units, gaps, patrols, cameras."""
        txn = _Txn(self, now)
        for site in sorted({s for s in self.config.sites if self._owns(s)} | set(self._arming)):
            txn.panel(site)
        tick = Tick()
        for name, watch in list(self._watches.items()):
            kind, _, rest = name.partition(":")
            if kind == "door":
                assert isinstance(watch, DoorWatch)
                site, device, sensor = rest.split(":")
                if watch.open_since is None or watch.held:
                    continue
                limit = self.config.site(site).held_open_s(device, sensor)
                key = AlertKey(Rule.DOOR_HELD_OPEN, site, device, sensor)
                door, signals = sensor_rules.door_held_open(watch, key, limit, tick, now)
                txn.watch(name, door)
                txn.signals(signals)
            elif kind == "unit":
                assert isinstance(watch, UnitWatch)
                site, device = rest.split(":")
                self._unit(txn, self.config.site(site), site, device, tick)
            elif kind == "gap":
                assert isinstance(watch, GapWatch)
                site, device = rest.split(":")
                key = AlertKey(Rule.INTEGRITY, site, device, "seq-gap")
                limits = self.config.site(site).thresholds
                gap, signals = unit_rules.seq_gap(watch, key, limits, tick, now)
                txn.watch(name, gap)
                txn.signals(signals)
            elif kind == "camera":
                assert isinstance(watch, CameraWatch)
                site, device, sensor = rest.split(":")
                key = AlertKey(Rule.CAMERA_FAULT, site, device, sensor)
                limit_s = self.config.site(site).thresholds.camera_fault_s
                cam, signals = sensor_rules.camera_fault(watch, key, limit_s, tick, now)
                txn.watch(name, cam)
                txn.signals(signals)
        for site, config in self.config.sites.items():
            for post in config.posts:
                name = f"post:{site}:{post.device}:{post.sensor}"
                key = AlertKey(Rule.PATROL_MISSED, site, post.device, post.sensor)
                pw = self._get(name, PostWatch, PostWatch())
                pw, signals = sensor_rules.patrol_missed(
                    pw, key, post, config.zone, tick, now, self.watching_since
                )
                txn.watch(name, pw)
                txn.signals(signals)
        changes = self._commit(txn)
        if now - self._last_prune >= HOUR:
            self._last_prune = now
            self.store.prune(now - self.config.keep_days * 24 * HOUR)
        return changes

    # operators -------------------------------------------------------------------------------

    def arm(self, site: str, by: str, how: ArmingHow | str, now: int) -> Changes:
        """Arm a site by hand (exit delay first); arming an armed site changes nothing."""
        return self._manual(site, by, how, now, arm=True)

    def disarm(self, site: str, by: str, how: ArmingHow | str, now: int) -> Changes:
        """Disarm a site by hand; it holds until the next scheduled transition."""
        return self._manual(site, by, how, now, arm=False)

    def ack(self, alert_id: str, by: str, now: int) -> Changes:
        """An operator acknowledges an open alert; again changes nothing."""
        key, alert = self._find_open(alert_id)
        txn = _Txn(self, now)
        change = lifecycle.acknowledge(alert, _operator(by), now)
        if change is not None:
            txn.change(key, change)
        return self._commit(txn)

    def resolve(self, alert_id: str, by: str, now: int, note: str | None = None) -> Changes:
        """An operator closes an open alert (the only way to close a latched one)."""
        key, alert = self._find_open(alert_id)
        txn = _Txn(self, now)
        txn.change(key, lifecycle.resolve(alert, _operator(by), now, note))
        return self._commit(txn)

    def command(
        self, site: str, name: str, payload: bytes, now: int, *, retained: bool = False
    ) -> Changes:
        """An operator's signed command from jaga/v1/<site>/cmd/<name> (SiteCommand in a
        SignedCommand envelope); the gate refuses unsigned, stale, replayed, retained ones."""
        if name not in ("arm", "disarm", "ack", "resolve"):
            raise AlertError(f"unknown command {name!r}: use arm, disarm, ack or resolve")
        if self.gate is None:
            raise AlertError(
                f"{name} for {site} refused: this collector cannot check operators' signatures "
                "(no registry_dir in collector.toml)"
            )
        cmd = self.gate.open(site, name, payload, now, retained=retained)
        if name in ("arm", "disarm"):
            return self._manual(site, cmd.operator, cmd.how, now, arm=name == "arm")
        if cmd.alert_id is None:
            raise AlertError(f"{name} needs alert_id")
        alert = self.alert(cmd.alert_id)
        if alert is not None and alert.site != site:
            raise AlertError(f"alert {cmd.alert_id} belongs to site {alert.site}, not {site}")
        if name == "ack":
            return self.ack(cmd.alert_id, cmd.operator, now)
        return self.resolve(cmd.alert_id, cmd.operator, now, cmd.note)

    # reading and recovery --------------------------------------------------------------------

    def open_alerts(self, site: str | None = None) -> list[Alert]:
        alerts = [a for a in self._open.values() if site is None or a.site == site]
        return sorted(alerts, key=lambda a: (a.raised_at, a.id))

    def alert(self, alert_id: str) -> Alert | None:
        found = self.store.alert(alert_id)
        return found[1] if found else None

    def arming_state(self, site: str) -> ArmingState | None:
        state = self._arming.get(site)
        return state.wire() if state is not None else None

    def pending(self) -> list[Changes]:
        """Changes decided but not confirmed as published (a crash came in between)."""
        out = []
        for outbox_id, body in self.store.outbox():
            changes = Changes.model_validate_json(body)
            out.append(changes.model_copy(update={"outbox_id": outbox_id}))
        return out

    def confirm(self, changes: Changes | Iterable[Changes]) -> None:
        """The collector published, wrote and submitted these changes."""
        batch = [changes] if isinstance(changes, Changes) else list(changes)
        ids = [c.outbox_id for c in batch if c.outbox_id is not None]
        if ids:
            self.store.confirm(ids)

    def snapshot(self, now: int, closed_within_s: int = 7 * 24 * 3600) -> Changes:
        """Every open alert, every site's arming state, and an empty retained message for each
        alert closed lately: re-published at start, this heals a retained update lost in a
        crash (publishing an empty retained message where there is none is harmless).

        Only `messages()` of it are meant to be used: it has no points and no notifications.
        """
        kinds = {True: ChangeKind.ACKNOWLEDGED, False: ChangeKind.RAISED}
        alerts = [Change(alert=a, kind=kinds[a.acked_at is not None]) for a in self.open_alerts()]
        for alert in self.store.alerts(since=now - closed_within_s * S, limit=100_000):
            if not alert.state.is_open:
                kind = ChangeKind.RESOLVED if alert.closed_by else ChangeKind.CLEARED
                alerts.append(Change(alert=alert, kind=kind))
        states = [s.wire() for _, s in sorted(self._arming.items())]
        return Changes(alerts=alerts, arming=states)

    def sync_gaps(self, gaps: Iterable[GapLike], site_of: Mapping[str, str], now: int) -> Changes:
        """Make the engine's missing seqs those of the chain book (`ChainBook.gaps()`), at start.

        on_gap follows the chain's commits; a crash between a commit and on_gap would leave
        the two apart. `site_of` maps device to site (from the registry); units it does not
        name keep the site the engine already knows them by.
        """
        known: dict[str, str] = {}
        for name in self._watches:
            kind, *parts = name.split(":")
            if kind in ("unit", "gap", "door", "camera", "post", "health"):
                known[parts[1]] = parts[0]
        wanted: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        for gap in gaps:
            site = site_of.get(gap.device) or known.get(gap.device)
            if site is None:
                continue
            wanted.setdefault((site, gap.device), []).append((gap.first, gap.last, gap.opened_ns))
        txn = _Txn(self, now)
        units = set(wanted) | {
            (n.split(":")[1], n.split(":")[2]) for n in self._watches if n.startswith("gap:")
        }
        for site, device in sorted(units):
            name = f"gap:{site}:{device}"
            before = self._get(name, GapWatch, GapWatch())
            missing = sorted(wanted.get((site, device), []))
            if missing == before.missing:
                continue
            key = AlertKey(Rule.INTEGRITY, site, device, "seq-gap")
            if not missing and before.reported:
                txn.watch(name, GapWatch())
                txn.signals([Clear(key, "every missing event arrived", now)])
            else:
                txn.watch(name, GapWatch(missing=missing, reported=before.reported))
        return self._commit(txn)

    # helpers ---------------------------------------------------------------------------------

    def _manual(self, site: str, by: str, how: ArmingHow | str, now: int, *, arm: bool) -> Changes:
        try:
            check_id(site, "site")
            mode = ArmingHow(how)
        except (InvalidIdentifier, ValueError) as exc:
            raise AlertError(str(exc)) from None
        if mode in (ArmingHow.SENSOR, ArmingHow.STARTUP):
            raise AlertError(f"how must be schedule, cli or mqtt, not {mode.value}")
        name = _operator(by)
        txn = _Txn(self, now)
        panel = txn.panel(site)
        action: arming.ArmingInput = arming.Arm(name, mode) if arm else arming.Disarm(name, mode)
        txn.apply(site, arming.step(panel, self.config.site(site), action, now))
        return self._commit(txn)

    def _unit(
        self,
        txn: _Txn,
        config: SiteAlerts,
        site: str,
        device: str,
        item: Heartbeat | Status | Tick,
    ) -> None:
        name = f"unit:{site}:{device}"
        before = self._watches.get(name)
        assert before is None or isinstance(before, UnitWatch)
        current = before or UnitWatch(interval_s=config.thresholds.heartbeat_s)
        key = AlertKey(Rule.UNIT_OFFLINE, site, device)
        after, signals = unit_rules.unit_offline(
            current, key, config.thresholds, item, txn.now, self.watching_since
        )
        # Heartbeat arrival times stay in memory: after a restart silence counts from then.
        # A will is kept: its grace runs on across a restart (from the restart at least).
        persist = before is None or (before.offline, before.interval_s, before.will_at) != (
            after.offline,
            after.interval_s,
            after.will_at,
        )
        txn.watch(name, after, persist=persist)
        txn.signals(signals)

    def _get(self, name: str, model: type[W], default: W) -> W:
        found = self._watches.get(name)
        return found if isinstance(found, model) else default

    def _past(self, site: str, now: int) -> list[ArmingAudit]:
        """Arming history of a site over keep_days, for events that arrive late."""
        history = self._history.get(site)
        if history is None:
            since = now - self.config.keep_days * 24 * HOUR
            older = self.store.last_audit_before(site, since)
            history = ([older] if older else []) + self.store.audits(site, since)
            self._history[site] = history
        return history

    def _remember(self, audit: ArmingAudit) -> None:
        """Add a record made in this call (not yet on disk) to the site's history."""
        history = self._past(audit.site, audit.at)
        bisect.insort(history, audit, key=lambda a: a.at)

    def _find_open(self, alert_id: str) -> tuple[str, Alert]:
        for key, alert in self._open.items():
            if alert.id == alert_id:
                return key, alert
        found = self.store.alert(alert_id)
        if found is None:
            raise UnknownAlert(f"no alert {alert_id!r}: see `jaga-collector alerts list`")
        raise AlertClosed(f"alert {alert_id} is already {found[1].state.value}")

    def _commit(self, txn: _Txn) -> Changes:
        changes = txn.changes
        if self._batch is not None:
            self._batch.add(txn)
            return changes
        if changes:
            txn.writes.outbox = changes.model_dump_json()
        if txn.writes:
            changes.outbox_id = self._write(txn.writes)
        return changes

    def _write(self, writes: Writes) -> int | None:
        try:
            outbox_id = self.store.commit(writes)
        except BaseException:
            self._load()  # memory must not run ahead of the disk
            raise
        for site, device, seq, _ in writes.applied:
            unit = (site, device)
            self._applied_hi[unit] = max(seq, self._applied_hi.get(unit, seq))
        return outbox_id

    def _applied(self, site: str, device: str, seq: int) -> bool:
        if self._batch is not None and (site, device, seq) in self._batch.applied:
            return True
        high = self._applied_hi.get((site, device))
        if high is None or seq > high:  # the usual case: a new event, above all applied
            return False
        return self.store.was_applied(site, device, seq)


def _gate_of(config: AlertsConfig, store: AlertStore) -> SiteCommandGate | None:
    """The registry's gate, nonces beside the alert store; None without a registry."""
    if config.registry_dir is None:
        return None
    from broker.site_commands import SiteCommandGate

    return SiteCommandGate.at(config.registry_dir, store.path.parent)


def _operator(by: str) -> str:
    try:
        return _OPERATOR.validate_python(by)
    except ValidationError:
        raise AlertError(
            f"operator name {by!r} is not valid: 1-64 printable characters, "
            "not starting or ending with a space"
        ) from None
