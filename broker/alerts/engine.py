"""The alert engine the collector calls: messages and time in, changes to publish out.

No MQTT, no InfluxDB: every call returns `Changes` — retained alert and arming messages,
audit records, notifications and Influx points — and the collector does the I/O. Each call
that changes anything is one SQLite transaction that also keeps its `Changes` in an outbox
until the collector `confirm`s them, so a crash between deciding and publishing is healed by
`pending()` after the restart: retained messages and points are idempotent, notifications
are de-duplicated by id in the Notifier.

A call stages its decisions in a `Transaction` (transaction.py) over the engine's memory
(`EngineState`, engine_state.py); the rules keep their state in watches (watches.py).

One engine per deployment (or per site partition): alert and arming state is not shared
between collectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from broker.alerts import arming, lifecycle, people, sensor_rules, unit_rules
from broker.alerts.arming import Tick
from broker.alerts.changes import Changes
from broker.alerts.config import AlertsConfig, SiteAlerts
from broker.alerts.engine_state import EngineState
from broker.alerts.lifecycle import AlertClosed, AlertError, Change, ChangeKind, UnknownAlert
from broker.alerts.rules import AlertKey, Clear, Raise, Rule, is_silent, time_params
from broker.alerts.store import AlertStore, Writes
from broker.alerts.transaction import Batch, Transaction
from broker.alerts.unit_rules import GapChange, GapLike, GapWatch, IntegrityLike
from broker.alerts.watches import FED_BY, GAP, HEALTH, UNIT, WATCHED, WatchKey, WatchKind
from broker.i18n import N_
from kernel.units import HOUR, S
from protocol.alerting import DEFAULT_ZONE, Alert, ArmingHow, ArmingState, OperatorName
from protocol.ids import InvalidIdentifier, check_id
from protocol.models import Event, Heartbeat, Kind, Status

if TYPE_CHECKING:
    from broker.site_commands import SiteCommandGate

_OPERATOR: TypeAdapter[str] = TypeAdapter(OperatorName)


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
        self._grace_ends_by = now + config.resume_max_s * S  # however long a storm lasts
        self.blind = False  # no broker: no unit is judged offline (link_lost, link_back)
        self._last_prune = 0
        self._batch: Batch | None = None
        self.state = self._load()

    def link_lost(self) -> None:
        """The collector lost the broker (a broker restart publishes every unit's will as it
        goes): it hears no unit now, so no unit's silence or will is judged until link_back."""
        self.blind = True

    def link_back(self, now: int) -> None:
        """The collector has the broker again: silence and wills count from now plus the
        resume grace (the units reconnect too), never from earlier than before."""
        self.blind = False
        self.watching_since = max(self.watching_since, now + self.config.resume_grace_s * S)
        self._grace_ends_by = max(self._grace_ends_by, now + self.config.resume_max_s * S)

    def _unit_back(self, now: int) -> None:
        """A unit's birth inside the resume grace: its fleet is still reconnecting (a broker
        restart's storm of TLS handshakes took 91-164 s for 10,000 units), so the grace runs
        until resume_grace_s after the last unit came back, at most resume_max_s after the
        link returned; a unit that never comes back is judged after that."""
        if not self.blind and now < self.watching_since:
            extended = max(self.watching_since, now + self.config.resume_grace_s * S)
            self.watching_since = min(extended, self._grace_ends_by)

    def _owns(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def _load(self) -> EngineState:
        return EngineState(self.store, self.config.keep_days * 24 * HOUR, self._owns)

    @contextmanager
    def batch(self) -> Iterator[Changes]:
        """Many calls, one transaction (a collector batch): yields their merged Changes.

        The calls inside still return their own Changes, without an outbox id; publish the
        merged ones after the block, then confirm them. An exception inside writes nothing.
        """
        if self._batch is not None:
            raise RuntimeError("engine batches do not nest")
        current = self._batch = Batch()
        try:
            yield current.changes
        except BaseException:
            self._batch = None
            self.state = self._load()
            raise
        self._batch = None
        if current.changes:
            current.writes.outbox = current.changes.model_dump_json()
        if current.writes:
            current.changes.outbox_id = self._write(current.writes)

    # inputs ----------------------------------------------------------------------------------

    def on_event(self, event: Event, now: int) -> Changes:
        """A verified, new event (an Accepted outcome of broker.ingest)."""
        site, device, sensor = event.site, event.device, event.sensor
        if self._applied(site, device, event.seq):
            return Changes()  # delivered again after a crash: already counted
        txn = self._begin(now)
        config = self.config.site(site)
        zone = config.zone_of(device, sensor) if event.kind in _ZONED else DEFAULT_ZONE
        panel = txn.panel(site, zone)
        if event.kind is Kind.DOOR:
            history = self.state.history(site, zone, now)
            step, signals = sensor_rules.forced_door(panel, config, history, event, now)
            txn.apply(step)
            txn.signals(signals)
        elif event.kind is Kind.MOTION:
            history = self.state.history(site, zone, now)
            txn.signals(sensor_rules.intrusion(panel, history, event, config.zone, now))
        elif event.kind in (Kind.TAMPER, Kind.CAMERA):
            txn.signals(sensor_rules.tamper(event, config.zone, now))
        for watched in FED_BY[event.kind]:
            txn.step(watched, WatchKey(watched.kind, site, device, sensor), event)
        if txn.writes:
            txn.writes.applied.append((site, device, event.seq, now))
        return self._commit(txn)

    def on_heartbeat(self, hb: Heartbeat, now: int) -> Changes:
        txn = self._begin(now)
        txn.panel(hb.site)
        txn.step(UNIT, WatchKey(WatchKind.UNIT, hb.site, hb.device), hb)
        txn.step(HEALTH, WatchKey(WatchKind.HEALTH, hb.site, hb.device), hb)
        return self._commit(txn)

    def on_status(self, status: Status, now: int) -> Changes:
        if status.state == "online":
            self._unit_back(now)
        txn = self._begin(now)
        txn.panel(status.site)
        txn.step(UNIT, WatchKey(WatchKind.UNIT, status.site, status.device), status)
        return self._commit(txn)

    def on_integrity(self, issue: IntegrityLike, now: int) -> Changes:
        """A message that failed verification (broker.ingest.Rejected with is_integrity)."""
        txn = self._begin(now)
        txn.signals(unit_rules.integrity(issue, now))
        return self._commit(txn)

    def on_evidence_refused(
        self, site: str, device: str, detail: str, disk_full: bool, now: int
    ) -> Changes:
        """A picture a unit signed could not be kept (broker.evidence.EvidenceRefused)."""
        txn = self._begin(now)
        txn.signals([unit_rules.evidence_refused(site, device, detail, disk_full, now)])
        return self._commit(txn)

    def on_enrolment_refused(
        self, site: str, device: str | None, renewal: bool, reason: str, detail: str, now: int
    ) -> Changes:
        """The enrolment endpoint refused a token or a renewal (the registry's lifecycle log,
        read by the collector: broker/collector/lifecycle.py)."""
        if not self._owns(site):
            return Changes()
        txn = self._begin(now)
        txn.signals([unit_rules.enrolment_refused(site, device, renewal, reason, detail, now)])
        return self._commit(txn)

    def on_gap(
        self, site: str, device: str, first: int, last: int, change: str, now: int
    ) -> Changes:
        """A gap change from ChainBook.commit: (device, first, last, 'opened'|'closed')."""
        if change not in ("opened", "closed"):
            raise ValueError(f"gap change {change!r} is neither 'opened' nor 'closed'")
        txn = self._begin(now)
        item = GapChange(first, last, "opened" if change == "opened" else "closed")
        txn.step(GAP, WatchKey(WatchKind.GAP, site, device), item)
        return self._commit(txn)

    def tick(self, now: int) -> Changes:
        """Time passed: delays, schedules, held doors, silent units, gaps, patrols, cameras."""
        txn = self._begin(now)
        owned = {s for s in self.config.sites if self._owns(s)}
        for site in sorted(owned | {site for site, _ in self.state.panels()}):
            txn.panels(site)
        tick = Tick()
        for key, _ in self.state.watches():
            if WATCHED[key.kind].ticks and not (self.blind and key.kind is WatchKind.UNIT):
                txn.step(WATCHED[key.kind], key, tick)
        for watched in WATCHED.values():
            for key in watched.configured(self.config) if watched.configured else ():
                txn.step(watched, key, tick)
        changes = self._commit(txn)
        if now - self._last_prune >= HOUR:
            self._last_prune = now
            self.store.prune(now - self.config.keep_days * 24 * HOUR)
        return changes

    # operators -------------------------------------------------------------------------------

    def arm(
        self, site: str, by: str, how: ArmingHow | str, now: int, *, zone: str | None = None
    ) -> Changes:
        """Arm a zone by hand (exit delay first), or every zone of the site (zone None);
        arming an armed zone changes nothing."""
        return self._manual(site, by, how, now, zone=zone, arm=True)

    def disarm(
        self,
        site: str,
        by: str,
        how: ArmingHow | str,
        now: int,
        *,
        zone: str | None = None,
        code: str | None = None,
        account: str | None = None,
        judged: people.CodeKind | None = None,
    ) -> Changes:
        """Disarm a zone by hand, or every zone of the site (zone None); it holds until the
        next scheduled transition.

        code: the person's PIN; their duress PIN disarms as usual and raises a silent duress
        alert. account: the login or certificate name the person authenticated as (PINs and
        two-person zones go by it; default `by`). judged: what their code was, checked
        already by the caller (`people.judge`, on its own thread: an argon2 check is some
        50 ms); then code is not looked at. A two-person zone's first request only waits
        for a second person; one person twice is refused (AlertError), as is a wrong code."""
        name = _operator(by)
        who = _operator(account or by)
        if judged is None:
            judged = people.judge(self.config.people, who, code)
        duress = judged is people.CodeKind.DURESS
        return self._manual(site, name, how, now, zone=zone, arm=False, account=who, duress=duress)

    def duress(
        self, site: str, by: str, how: ArmingHow | str, now: int, *, zone: str | None = None
    ) -> Changes:
        """Only the silent duress alert: a duress PIN typed where the disarm was refused before
        the engine was asked (a paused Home Assistant keypad); no zone changes."""
        try:
            check_id(site, "site")
        except InvalidIdentifier as exc:
            raise AlertError(str(exc)) from None
        _how(how)
        name = _operator(by)
        config = self.config.site(site)
        known = zone if zone in config.zone_names() else None
        txn = self._begin(now)
        txn.signals([_duress(site, known, name, config, now)])
        return self._commit(txn)

    def bypass(
        self,
        site: str,
        device: str,
        sensor: str,
        by: str,
        how: ArmingHow | str,
        now: int,
        *,
        for_s: float,
        reason: str,
    ) -> Changes:
        """Keep one sensor from raising forced-door or intrusion for for_s seconds (at most the
        site's bypass_max_min) or until its zone is disarmed; its events are still stored."""
        _sensor_ids(site, device, sensor)
        config = self.config.site(site)
        if not reason.strip():
            raise AlertError("a bypass needs a reason (what is broken, who fixes it)")
        if not 0 < for_s <= config.bypass_max_min * 60:
            raise AlertError(
                f"a bypass lasts more than 0 and at most {config.bypass_max_min} min at {site} "
                "(bypass_max_min)"
            )
        mode = _how(how)
        name = _operator(by)
        zone = config.zone_of(device, sensor)
        txn = self._begin(now)
        panel = txn.panel(site, zone)
        until = now + int(for_s * S)
        action = arming.BypassSensor(device, sensor, name, mode, until, reason.strip())
        txn.apply(arming.step(panel, config, action, now))
        return self._commit(txn)

    def unbypass(
        self, site: str, device: str, sensor: str, by: str, how: ArmingHow | str, now: int
    ) -> Changes:
        """Lift one sensor's bypass now (it was repaired): its next opening while its zone
        guards alarms again; the audit trail names who lifted it. AlertError when the sensor
        is not bypassed."""
        _sensor_ids(site, device, sensor)
        config = self.config.site(site)
        mode = _how(how)
        name = _operator(by)
        txn = self._begin(now)
        panel = txn.panel(site, config.zone_of(device, sensor))
        action = arming.LiftBypass(device, sensor, name, mode)
        txn.apply(arming.step(panel, config, action, now))
        return self._commit(txn)

    def ack(self, alert_id: str, by: str, now: int) -> Changes:
        """An operator acknowledges an open alert; again changes nothing."""
        key, alert = self._find_open(alert_id)
        txn = self._begin(now)
        change = lifecycle.acknowledge(alert, _operator(by), now)
        if change is not None:
            txn.change(key, change)
        return self._commit(txn)

    def resolve(self, alert_id: str, by: str, now: int, note: str | None = None) -> Changes:
        """An operator closes an open alert (the only way to close a latched one)."""
        key, alert = self._find_open(alert_id)
        txn = self._begin(now)
        txn.change(key, lifecycle.resolve(alert, _operator(by), now, note))
        return self._commit(txn)

    def command(
        self, site: str, name: str, payload: bytes, now: int, *, retained: bool = False
    ) -> Changes:
        """An operator's signed command from jaga/v1/<site>/cmd/<name> (SiteCommand in a
        SignedCommand envelope); the gate refuses unsigned, stale, replayed, retained ones."""
        if name not in ("arm", "disarm", "ack", "resolve", "bypass", "unbypass"):
            raise AlertError(
                f"unknown command {name!r}: use arm, disarm, bypass, unbypass, ack or resolve"
            )
        if self.gate is None:
            raise AlertError(
                f"{name} for {site} refused: this collector cannot check operators' signatures "
                "(no registry_dir in collector.toml)"
            )
        cmd = self.gate.open(site, name, payload, now, retained=retained)
        if name == "arm":
            return self.arm(site, cmd.operator, cmd.how, now, zone=cmd.zone)
        if name == "disarm":
            return self.disarm(site, cmd.operator, cmd.how, now, zone=cmd.zone, code=cmd.code)
        if name == "bypass":
            if cmd.device is None or cmd.sensor is None or cmd.for_s is None:
                raise AlertError("bypass needs device, sensor and for_s")
            return self.bypass(
                site,
                cmd.device,
                cmd.sensor,
                cmd.operator,
                cmd.how,
                now,
                for_s=cmd.for_s,
                reason=cmd.reason or "",
            )
        if name == "unbypass":
            if cmd.device is None or cmd.sensor is None:
                raise AlertError("unbypass needs device and sensor")
            return self.unbypass(site, cmd.device, cmd.sensor, cmd.operator, cmd.how, now)
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
        alerts = [a for a in self.state.open_alerts() if site is None or a.site == site]
        return sorted(alerts, key=lambda a: (a.raised_at, a.id))

    def alert(self, alert_id: str) -> Alert | None:
        found = self.store.alert(alert_id)
        return found[1] if found else None

    def arming_state(self, site: str) -> ArmingState | None:
        """The site's retained message as it stands (None: the engine has not seen the site)."""
        return self._site_wire(site)

    def _site_wire(self, site: str) -> ArmingState | None:
        config = self.config.site(site)
        panels = [self.state.panel(site, z) for z in config.zone_names()]
        known = [p for p in panels if p is not None]
        return arming.site_wire(site, known, config) if known else None

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
        alerts = [
            Change(alert=a, kind=kinds[a.acked_at is not None])
            for a in self.open_alerts()
            if not _silent(a)
        ]
        for alert in self.store.alerts(since=now - closed_within_s * S, limit=100_000):
            if not alert.state.is_open and not _silent(alert):
                kind = ChangeKind.RESOLVED if alert.closed_by else ChangeKind.CLEARED
                alerts.append(Change(alert=alert, kind=kind))
        sites = sorted({site for site, _ in self.state.panels()})
        states = [w for w in map(self._site_wire, sites) if w is not None]
        return Changes(alerts=alerts, arming=states)

    def sync_gaps(self, gaps: Iterable[GapLike], site_of: Mapping[str, str], now: int) -> Changes:
        """Make the engine's missing seqs those of the chain book (`ChainBook.gaps()`), at start.

        on_gap follows the chain's commits; a crash between a commit and on_gap would leave
        the two apart. `site_of` maps device to site (from the registry); units it does not
        name keep the site the engine already knows them by.
        """
        watched = [key for key, _ in self.state.watches()]
        known = {k.device: k.site for k in watched if k.kind is not WatchKind.NOTE}
        wanted: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        for gap in gaps:
            site = site_of.get(gap.device) or known.get(gap.device)
            if site is None:
                continue
            wanted.setdefault((site, gap.device), []).append((gap.first, gap.last, gap.opened_ns))
        txn = self._begin(now)
        units = set(wanted) | {(k.site, k.device) for k in watched if k.kind is WatchKind.GAP}
        for site, device in sorted(units):
            key = WatchKey(WatchKind.GAP, site, device)
            before = self.state.watch(key, GapWatch) or GapWatch()
            missing = sorted(wanted.get((site, device), []))
            if missing == before.missing:
                continue
            if not missing and before.reported:
                txn.keep(key, GapWatch())
                alert = AlertKey(Rule.INTEGRITY, site, device, "seq-gap")
                txn.signals([Clear(alert, "every missing event arrived", now)])
            else:
                txn.keep(key, GapWatch(missing=missing, reported=before.reported))
        return self._commit(txn)

    # helpers ---------------------------------------------------------------------------------

    def _manual(
        self,
        site: str,
        by: str,
        how: ArmingHow | str,
        now: int,
        *,
        zone: str | None,
        arm: bool,
        account: str | None = None,
        duress: bool = False,
    ) -> Changes:
        """Arm or disarm zones in one transaction (with the silent duress alert, if any).

        A refusal changes no zone (all of them or none). Under duress the silent alert is
        raised whatever becomes of the disarm: refused, the AlertError carries it in
        `changes` (the person sees the same message as with their normal PIN)."""
        try:
            check_id(site, "site")
        except InvalidIdentifier as exc:
            raise AlertError(str(exc)) from None
        name = _operator(by)
        config = self.config.site(site)
        txn = self._begin(now)
        try:
            mode = _how(how)
            zones = config.zone_names() if zone is None else [zone]
            if zone is not None and zone not in config.zone_names():
                known = ", ".join(config.zone_names())
                raise AlertError(f"site {site} has no zone {zone!r} (its zones: {known})")
            action: arming.ArmingInput = (
                arming.Arm(name, mode) if arm else arming.Disarm(name, mode, account)
            )
            # Every zone's step first, applied only once none was refused.
            steps = [arming.step(txn.panel(site, z), config, action, now) for z in zones]
        except AlertError as exc:
            # Committed regardless: the zones brought up to now (txn.panel did that in memory)
            # and, under duress, the silent alert; the caller emits them and shows the refusal.
            if duress:
                known_zone = zone if zone in config.zone_names() else None
                txn.signals([_duress(site, known_zone, name, config, now)])
            exc.changes = self._commit(txn)
            raise
        for one in steps:
            txn.apply(one)
        if duress:
            txn.signals([_duress(site, zone, name, config, now)])
        return self._commit(txn)

    def _find_open(self, alert_id: str) -> tuple[AlertKey, Alert]:
        found = self.state.find_open(alert_id)
        if found is not None:
            return found
        stored = self.store.alert(alert_id)
        if stored is None:
            raise UnknownAlert(f"no alert {alert_id!r}: see `jaga-collector alerts list`")
        raise AlertClosed(f"alert {alert_id} is already {stored[1].state.value}")

    def _begin(self, now: int) -> Transaction:
        return Transaction(self.state, self.config, now, self.watching_since)

    def _commit(self, txn: Transaction) -> Changes:
        changes = txn.finish()
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
            self.state = self._load()  # memory must not run ahead of the disk
            raise
        for site, device, seq, _ in writes.applied:
            self.state.applied(site, device, seq)
        return outbox_id

    def _applied(self, site: str, device: str, seq: int) -> bool:
        if self._batch is not None and (site, device, seq) in self._batch.applied:
            return True
        high = self.state.applied_high(site, device)
        if high is None or seq > high:  # the usual case: a new event, above all applied
            return False
        return self.store.was_applied(site, device, seq)


def _gate_of(config: AlertsConfig, store: AlertStore) -> SiteCommandGate | None:
    """The registry's gate, nonces beside the alert store; None without a registry."""
    if config.registry_dir is None:
        return None
    from broker.site_commands import SiteCommandGate

    return SiteCommandGate.at(config.registry_dir, store.path.parent)


_ZONED = (Kind.DOOR, Kind.MOTION)
"""The events judged against their zone's panel (other kinds alarm whatever the arming)."""


def _silent(alert: Alert) -> bool:
    return is_silent(alert.rule)


def _how(how: ArmingHow | str) -> ArmingHow:
    try:
        mode = ArmingHow(how)
    except ValueError as exc:
        raise AlertError(str(exc)) from None
    if mode in (ArmingHow.SENSOR, ArmingHow.STARTUP, ArmingHow.TIMER):
        raise AlertError(f"how must be schedule, cli, mqtt or web, not {mode.value}")
    return mode


def _duress(site: str, zone: str | None, by: str, config: SiteAlerts, now: int) -> Raise:
    """The silent alert of a disarm with a duress PIN: only the routes marked duress hear it."""
    where = f"{site}/{zone}" if zone else site
    key = AlertKey(Rule.DURESS, site, zone or DEFAULT_ZONE)
    params = time_params(config.zone, disarmed=now) | {"where": where, "by": by}
    title = N_("Duress: {by} disarmed {where} under duress")
    detail = N_("disarmed at {disarmed_at} with the duress PIN of {by}; act as if armed")
    return Raise.said(key, title, detail, params, now, latched=True)


def _sensor_ids(site: str, device: str, sensor: str) -> None:
    """AlertError naming the first of site, device, sensor that is not a valid identifier."""
    try:
        check_id(site, "site")
        check_id(device, "device")
        check_id(sensor, "sensor", allow_reserved=True)
    except InvalidIdentifier as exc:
        raise AlertError(str(exc)) from None


def _operator(by: str) -> str:
    try:
        return _OPERATOR.validate_python(by)
    except ValidationError:
        raise AlertError(
            f"operator name {by!r} is not valid: 1-64 printable characters, "
            "not starting or ending with a space"
        ) from None
