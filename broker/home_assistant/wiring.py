"""The bridge wired into a collector: its session, its alert engine, storage for the audit.

The collector calls four things, each one line in service.py: `will_of` (before its session
exists), `attach` (after), `turn` in its loop, and `close`.

The bridge publishes a site's panel when the alert engine changed it: `attach` makes it a
listener of the collector's alert glue (`AlertBridge.listeners`), so it hears every change
the guard-post page hears.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from broker.alerts import unit_rules
from broker.alerts.alert_points import InfluxPoint
from broker.home_assistant import topics
from broker.home_assistant.bridge import Decision, HomeAssistantBridge
from broker.home_assistant.codes import PanelCodes
from broker.mosquitto import ALL_SITES
from broker.web.config import Account
from kernel.mqtt import Will
from protocol.ids import InvalidIdentifier

if TYPE_CHECKING:
    from broker.alerts.changes import Changes
    from broker.alerts.engine import AlertEngine
    from broker.collector.service import Collector
    from broker.config import CollectorConfig

log = logging.getLogger("jaga.home_assistant")


def will_of(config: CollectorConfig) -> Will | None:
    """The collector's will when HA is on: its entities go unavailable if it vanishes."""
    if not config.home_assistant.enabled:
        return None
    return Will(topics.collector_status(config.mqtt.client_id), b"offline")


class Attached:
    """A bridge and the collector pieces its turn needs."""

    def __init__(self, collector: Collector, bridge: HomeAssistantBridge) -> None:
        self.collector = collector
        self.bridge = bridge

    def turn(self, stop: threading.Event) -> None:
        alerts = self.collector.alerts
        try:
            self.bridge.turn(
                alerts.engine,
                lambda changes: alerts.emit(changes, stop),
                lambda d, now: self._audit(d, now, stop),
            )
        except Exception:
            log.exception("Home Assistant bridge failed; events are stored regardless")

    def _audit(self, d: Decision, now: int, stop: threading.Event) -> None:
        """A refused panel command is kept beside the arming audit (never the code); one that
        paused the site's keypad raises an alert for the control room."""
        self.collector.stats.commands_refused += 1
        point = refused_point(d, now)
        self.collector.storage.store([point.to_point()], stop)
        if d.paused_s:
            alerts = self.collector.alerts
            wrong = self.collector.config.home_assistant.code_max_failures
            alerts.emit(paused_alert(alerts.engine, d, wrong, now), stop)

    def close(self) -> None:
        try:
            self.bridge.close()
        except Exception:
            log.exception("Home Assistant bridge failed to close; the collector closes regardless")


def waiting_of(session: object) -> int:
    """How many publishes the collector's paho client holds unsent or unacknowledged (its
    `_out_messages`; 0 when it is no paho client, e.g. a test's memory link)."""
    client = getattr(getattr(session, "link", None), "client", None)
    out = getattr(client, "_out_messages", None)
    return len(out) if out is not None else 0


def paused_alert(engine: AlertEngine, d: Decision, wrong: int, now: int) -> Changes:
    """Raise `panel-code-refused` for d's site (latched, warning). The engine has no input
    of its own for it yet: its transaction is used as its on_* inputs use it."""
    txn = engine._begin(now)
    txn.signals([unit_rules.panel_code_refused(d.site, wrong, d.paused_s, now)])
    return engine._commit(txn)


def refused_point(d: Decision, now: int) -> InfluxPoint:
    """arming_refused [site, how, action]: reason, zone."""
    return InfluxPoint(
        measurement="arming_refused",
        tags={"site": d.site, "how": "home-assistant", "action": d.action},
        fields={"reason": d.reason[:200], "zone": d.zone or ""},
        time_ns=now,
    )


def attach(collector: Collector) -> Attached | None:
    """Wire a bridge into the collector's session when `[home_assistant] enabled`."""
    config = collector.config
    if not config.home_assistant.enabled:
        return None
    web = config.web
    accounts = {a.name: a for a in web.accounts} if web is not None else {}
    registry_dir = config.registry_dir

    def may_act(name: str, site: str) -> bool:
        return operator_may_act(accounts, registry_dir, name, site)

    def who(name: str) -> str:
        account = accounts.get(name)
        return account.who if account is not None else name

    ha = config.home_assistant
    codes = PanelCodes(
        config.alerts.people,
        may_act,
        max_failures=ha.code_max_failures,
        lockout_s=ha.code_lockout_s,
    )
    session = collector.session
    bridge = HomeAssistantBridge(
        ha,
        client_id=config.mqtt.client_id,
        registry_dir=registry_dir,
        data_dir=config.data_dir,
        sites=frozenset(config.mqtt.sites) or None,
        alerts=config.alerts,
        codes=codes,
        who=who,
        publisher=session,
        connected=lambda: collector.stats.connected,
        connections=lambda: session.connections,
        picture_path=collector.evidence.path,
        waiting=lambda: waiting_of(session),
    )
    session.extra_filters = bridge.filters()
    session.on_other = bridge.take
    collector.alerts.listeners.append(bridge.on_changes)
    bridge.start()
    return Attached(collector, bridge)


def operator_may_act(
    accounts: Mapping[str, Account], registry_dir: Path, name: str, site: str
) -> bool:
    """The page's rule (broker/web/operations.py): only operators arm and disarm, so a
    code matches a page account only if it is an operator's that sees the site (a guard's
    never), or an operator identity in the registry that names the site (or every site)."""
    account = accounts.get(name)
    if account is not None and account.can_operate(site):
        return True
    sites = _operator_sites(registry_dir, name)
    return site in sites or ALL_SITES in sites


def _operator_sites(registry_dir: Path, name: str) -> tuple[str, ...]:
    from provisioning.errors import ProvisioningError
    from provisioning.registry import Registry

    try:
        return Registry(registry_dir).operator_sites(name)
    except (ProvisioningError, InvalidIdentifier, OSError):
        return ()
