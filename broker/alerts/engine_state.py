"""What the alert engine knows between calls: its store's content, mirrored in memory.

Open alerts by key, arming by (site, zone), rule state by watch key, the highest seq applied per
unit, and the arming history of the sites judged lately. A transaction changes it as it
stages its writes; when a commit fails, the engine throws it away and loads it again, so
memory never runs ahead of the disk.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from broker.alerts.arming import SiteArming
from broker.alerts.rules import AlertKey
from broker.alerts.store import AlertStore
from broker.alerts.watches import WATCHED, WatchKey
from protocol.alerting import DEFAULT_ZONE, Alert, ArmingAudit, AuditKind

W = TypeVar("W", bound=BaseModel)


class EngineState:
    """The engine's memory; one thread uses it (the engine's)."""

    def __init__(self, store: AlertStore, keep_ns: int, owns: Callable[[str], bool]) -> None:
        """keep_ns: how far back late events are judged against the arming history.
        owns: whether this engine judges a site (the others' arming is not loaded)."""
        self._store = store
        self._keep_ns = keep_ns
        self._applied_hi = store.applied_high_water()
        self._open = {AlertKey.parse(key): alert for key, alert in store.open_alerts()}
        self._arming = {(s.site, s.zone): s for s in store.arming().values() if owns(s.site)}
        self._history: dict[tuple[str, str], list[ArmingAudit]] = {}
        self._watches: dict[WatchKey, BaseModel] = {}
        for name, body in store.watches().items():
            try:
                key = WatchKey.parse(name)
            except ValueError:
                continue  # no watch this version keeps
            self._watches[key] = WATCHED[key.kind].model.model_validate_json(body)

    # alerts ----------------------------------------------------------------------------------

    def open_alert(self, key: AlertKey) -> Alert | None:
        return self._open.get(key)

    def open_alerts(self) -> list[Alert]:
        return list(self._open.values())

    def find_open(self, alert_id: str) -> tuple[AlertKey, Alert] | None:
        for key, alert in self._open.items():
            if alert.id == alert_id:
                return key, alert
        return None

    def keep_alert(self, key: AlertKey, alert: Alert) -> None:
        """An alert as a change left it: open, it is the key's; closed, the key has none."""
        if alert.state.is_open:
            self._open[key] = alert
        elif key in self._open and self._open[key].id == alert.id:
            del self._open[key]

    # arming ----------------------------------------------------------------------------------

    def panel(self, site: str, zone: str = DEFAULT_ZONE) -> SiteArming | None:
        return self._arming.get((site, zone))

    def panels(self) -> dict[tuple[str, str], SiteArming]:
        """Every zone's panel by (site, zone)."""
        return dict(self._arming)

    def keep_panel(self, state: SiteArming) -> None:
        self._arming[(state.site, state.zone)] = state

    def history(self, site: str, zone: str, now: int) -> list[ArmingAudit]:
        """A zone's changes of arming state over keep_days, for events that arrive late."""
        history = self._history.get((site, zone))
        if history is None:
            since = now - self._keep_ns
            older = self._store.last_audit_before(site, since, zone)
            history = ([older] if older else []) + [
                a for a in self._store.audits(site, since) if _changes_state(a, zone)
            ]
            self._history[(site, zone)] = history
        return history

    def remember(self, audit: ArmingAudit) -> None:
        """Add a record made in this call (not yet on disk) to its zone's history."""
        if not _changes_state(audit, audit.zone):
            return
        history = self.history(audit.site, audit.zone, audit.at)
        bisect.insort(history, audit, key=lambda a: a.at)

    # rule state ------------------------------------------------------------------------------

    def watch(self, key: WatchKey, model: type[W]) -> W | None:
        found = self._watches.get(key)
        return found if isinstance(found, model) else None

    def watches(self) -> list[tuple[WatchKey, BaseModel]]:
        """Every watch, in the order they were first kept (a copy: safe to change meanwhile)."""
        return list(self._watches.items())

    def keep_watch(self, key: WatchKey, new: BaseModel) -> None:
        self._watches[key] = new

    # applied events --------------------------------------------------------------------------

    def applied_high(self, site: str, device: str) -> int | None:
        """No seq of this unit above it was applied: a new event needs no look-up on disk."""
        return self._applied_hi.get((site, device))

    def applied(self, site: str, device: str, seq: int) -> None:
        """An event of the unit was committed as applied."""
        unit = (site, device)
        self._applied_hi[unit] = max(seq, self._applied_hi.get(unit, seq))


def _changes_state(audit: ArmingAudit, zone: str) -> bool:
    """A record of this zone's arming state (not of a bypass or a request)."""
    return audit.zone == zone and audit.kind is AuditKind.ARMING
