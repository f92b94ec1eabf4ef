"""An alert in its reader's language: its title, detail and note rendered from the rule's
msgids and parameters (broker.i18n); an alert stored before it had them reads as stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from broker.i18n import N_, render


class Worded(Protocol):
    """What an alert (protocol.alerting.Alert, or the page's view of one) says and how."""

    @property
    def title(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def note(self) -> str | None: ...
    @property
    def msg(self) -> str | None: ...
    @property
    def detail_msg(self) -> str | None: ...
    @property
    def note_msg(self) -> str | None: ...
    @property
    def params(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class AlertText:
    title: str
    detail: str
    note: str | None


def alert_text(alert: Worded, lang: str) -> AlertText:
    """Title, detail and note in lang; what has no msgid stays as written (English, or an
    operator's own note)."""
    params = alert.params

    def said(msgid: str | None, written: str) -> str:
        return render(msgid, params, lang) if msgid else written

    note = said(alert.note_msg, alert.note) if alert.note is not None else None
    return AlertText(said(alert.msg, alert.title), said(alert.detail_msg, alert.detail), note)


# Words the page and notifications show for an alert's fields.
SEVERITIES = {"critical": N_("critical"), "warning": N_("warning")}
STATES = {
    "raised": N_("raised"),
    "acknowledged": N_("acknowledged"),
    "cleared": N_("cleared"),
    "resolved": N_("resolved"),
}
RULES = {
    "forced-door": N_("Forced door"),
    "door-held-open": N_("Door held open"),
    "intrusion": N_("Intrusion"),
    "tamper": N_("Tamper"),
    "unit-offline": N_("Unit offline"),
    "integrity": N_("Integrity"),
    "patrol-missed": N_("Patrol missed"),
    "camera-fault": N_("Camera fault"),
    "unit-health": N_("Unit health"),
    "evidence-refused": N_("Evidence not kept"),
    "enrolment-refused": N_("Enrolment refused"),
    "panel-code-refused": N_("Panel codes refused"),
}
