"""An alert's life: raised -> acknowledged -> cleared (condition gone) or resolved (operator).

- One open alert per key (rule + site + device + sensor). A repeated trigger of an open
  alert — raised or acknowledged — increments `count` and moves `last_seen`; an
  acknowledged alert stays acknowledged (the operator already owns it).
- `cleared` and `resolved` are final. A key that triggers again after its alert closed
  opens a *new* alert with a new id: the first incident is over and has its own record,
  ack and timeline; the new one must be seen and acknowledged on its own. (Notification
  cooldown is per key, so a flapping condition still does not flood anyone.)
- Latched alerts (forced door, intrusion, tamper, signature/chain/replay integrity) are
  incidents, not conditions: the condition going away does not clear them; an operator
  resolves them.
- Words: an alert keeps the rule's msgids (`msg`, `detail_msg`, `note_msg` when its condition
  cleared) and their `params`, and the English in `title`, `detail`, `note`; readers render
  it in their own language (broker/i18n.py), so history reads right in either.
- Ids are `<rule>-<10 hex>` from the key and the raise time: unique, stable across
  restarts, short enough to type, and a valid topic level (jaga/v1/<site>/alert/<id>).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from broker.alerts.rules import AlertKey, Clear, Raise
from protocol.alerting import Alert, AlertState

if TYPE_CHECKING:
    from broker.alerts.changes import Changes


class ChangeKind(StrEnum):
    RAISED = "raised"
    REPEATED = "repeated"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    RESOLVED = "resolved"


class Change(BaseModel):
    """What happened to an alert, with the alert as it is afterwards."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert: Alert
    kind: ChangeKind


class AlertError(ValueError):
    """An operator action that cannot be done, with a message fit for the operator.

    changes: what the engine decided and committed regardless (a refused disarm with a
    duress PIN still raises its silent alert): the caller publishes, stores and notifies
    them like any other Changes. Never shown to the person: their message is the same.
    """

    changes: Changes | None = None


class UnknownAlert(AlertError):
    pass


class AlertClosed(AlertError):
    pass


def alert_id(key: AlertKey, raised_at: int) -> str:
    digest = hashlib.sha256(f"{key.text}|{raised_at}".encode()).hexdigest()[:10]
    return f"{key.rule.value}-{digest}"


def key_of(alert: Alert) -> AlertKey:
    return AlertKey.parse(f"{alert.rule}:{alert.site}:{alert.device}:{alert.sensor or '-'}")


def on_raise(current: Alert | None, signal: Raise) -> Change:
    """Open a new alert, or count a repeat of the open one."""
    if current is not None and current.state.is_open:
        update = {
            "count": current.count + 1,
            "last_seen": max(current.last_seen, signal.at),
            "detail": signal.detail[:200],
            "event_id": signal.event_id or current.event_id,
            "detail_msg": signal.detail_msg,
            "params": _params(signal.params),
        }
        return Change(alert=current.model_copy(update=update), kind=ChangeKind.REPEATED)
    key = signal.key
    alert = Alert(
        id=alert_id(key, signal.at),
        site=key.site,
        device=key.device,
        sensor=key.sensor,
        rule=key.rule.value,
        severity=signal.severity,
        state=AlertState.RAISED,
        latched=signal.latched,
        title=signal.title[:200],
        detail=signal.detail[:200],
        msg=signal.msg,
        detail_msg=signal.detail_msg,
        params=_params(signal.params),
        count=1,
        raised_at=signal.at,
        last_seen=signal.at,
        event_id=signal.event_id,
    )
    return Change(alert=alert, kind=ChangeKind.RAISED)


def on_clear(current: Alert | None, signal: Clear) -> Change | None:
    """Close the open alert because its condition is gone; latched alerts wait for a person."""
    if current is None or not current.state.is_open or current.latched:
        return None
    update = {
        "state": AlertState.CLEARED,
        "closed_at": max(signal.at, current.last_seen),
        "note": signal.detail[:200],
        "note_msg": signal.msg,
        "params": _params({**current.params, **signal.params}),
    }
    return Change(alert=current.model_copy(update=update), kind=ChangeKind.CLEARED)


def _params(params: Mapping[str, str]) -> dict[str, str]:
    """What an alert can carry: at most 16 parameters of at most 200 characters."""
    return {k: v[:200] for k, v in list(params.items())[:16]}


def acknowledge(alert: Alert, by: str, now: int) -> Change | None:
    """An operator takes the alert; acknowledging twice changes nothing."""
    if not alert.state.is_open:
        raise AlertClosed(f"alert {alert.id} is already {alert.state.value}")
    if alert.state is AlertState.ACKNOWLEDGED:
        return None
    update = {"state": AlertState.ACKNOWLEDGED, "acked_at": now, "acked_by": by}
    return Change(alert=alert.model_copy(update=update), kind=ChangeKind.ACKNOWLEDGED)


def resolve(alert: Alert, by: str, now: int, note: str | None = None) -> Change:
    """An operator closes the alert (the only way to close a latched one)."""
    if not alert.state.is_open:
        raise AlertClosed(f"alert {alert.id} is already {alert.state.value}")
    update: dict[str, object] = {
        "state": AlertState.RESOLVED,
        "closed_at": now,
        "closed_by": by,
        "note": note[:200] if note else alert.note,
    }
    if alert.acked_at is None:  # resolving implies having seen it
        update |= {"acked_at": now, "acked_by": by}
    return Change(alert=alert.model_copy(update=update), kind=ChangeKind.RESOLVED)
