"""Which alert changes tell people, and what they say (pure; run by the engine).

A key notifies at most once per cooldown — a new alert, or a repeat of an open one once the
cooldown has passed ("again, 37 times"); a burst of triggers from one door is one message.
An alert that closes sends "cleared"/"resolved" only if people were told about that very
alert. Acknowledgements send nothing. The policy's state (`NoteWatch`) is persisted with the
alerts; delivery.py gets the notifications to people.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from broker.alerts.config import NotifyConfig
from broker.alerts.lifecycle import Change, ChangeKind
from broker.alerts.rules import local_time
from protocol.alerting import Severity


class Notification(BaseModel):
    """One message for people; `id` is unique per alert and change, so it is sent once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    key: str
    alert_id: str
    site: str
    severity: Severity
    kind: ChangeKind
    title: str
    body: str
    created: int


class NoteWatch(BaseModel):
    """What the policy remembers per alert key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    last_sent: int | None = None
    last_alert: str | None = None  # the alert id people were last told about


def decide(
    watch: NoteWatch, change: Change, config: NotifyConfig, zone: ZoneInfo, key: str, now: int
) -> tuple[NoteWatch, Notification | None]:
    """Whether this alert change tells people, honouring the cooldown of its key."""
    alert = change.alert
    if change.kind in (ChangeKind.RAISED, ChangeKind.REPEATED):
        cooled = watch.last_sent is None or now - watch.last_sent >= config.cooldown_s * 10**9
        if not cooled:
            return watch, None
        suffix = f"{change.kind.value}.{alert.count}"
    elif change.kind in (ChangeKind.CLEARED, ChangeKind.RESOLVED):
        if not config.notify_clears or watch.last_alert != alert.id:
            return watch, None
        suffix = change.kind.value
    else:
        return watch, None
    note = Notification(
        id=f"{alert.id}.{suffix}",
        key=key,
        alert_id=alert.id,
        site=alert.site,
        severity=alert.severity,
        kind=change.kind,
        title=_title(change),
        body=_body(change, zone),
        created=now,
    )
    if change.kind in (ChangeKind.RAISED, ChangeKind.REPEATED):
        watch = NoteWatch(last_sent=now, last_alert=alert.id)
    return watch, note


def _title(change: Change) -> str:
    alert = change.alert
    tag = alert.severity.value.upper()
    if change.kind is ChangeKind.REPEATED:
        return f"[{tag}] {alert.title} (again, {alert.count} times)"
    if change.kind in (ChangeKind.CLEARED, ChangeKind.RESOLVED):
        return f"[{change.kind.value.upper()}] {alert.title}"
    return f"[{tag}] {alert.title}"


def _body(change: Change, zone: ZoneInfo) -> str:
    a = change.alert
    lines = [a.detail] if a.detail else []
    lines.append(f"site {a.site}, unit {a.device}" + (f", {a.sensor}" if a.sensor else ""))
    lines.append(f"raised {local_time(a.raised_at, zone)}, seen {a.count} time(s)")
    if change.kind is ChangeKind.RESOLVED:
        lines.append(f"resolved by {a.closed_by}" + (f": {a.note}" if a.note else ""))
    elif change.kind is ChangeKind.CLEARED:
        lines.append(f"cleared {local_time(a.closed_at or a.last_seen, zone)}: {a.note or ''}")
    else:
        lines.append(f"alert {a.id}: jaga-collector alerts ack {a.id} --by NAME")
    return "\n".join(lines)
