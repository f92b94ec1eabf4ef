"""What the alert rules speak: the rules' names, the key of an alert, `Raise` and `Clear`.

The rules themselves are pure functions of (their state, an event or a tick, now) -> signals:
sensor_rules.py judges what sensors report (doors, motion, tamper, cameras, patrols) and
unit_rules.py the units themselves (offline, health, integrity, missing events, evidence).
A rule says `Raise` (the condition is there, or happened again) or `Clear` (it is gone);
lifecycle.py turns signals into alerts. Conditions are edge-triggered through the rule's
state, so ticks and retained messages seen again after a restart do not count twice.

Words: a rule says what happened as gettext msgids marked with `N_` and string parameters
(`Raise.said`, `Clear.said`); alerts keep them, and each reader (the page, a notification
route) renders them in their own language (broker/i18n.py). The English rendering fills
`title` and `detail` as before, for readers that do not render (Grafana, the CLI, MQTT).

Times: `now` is the collector's receipt clock. An event's own time (`event_time`) is its
`ts` when the unit's clock is synchronised (a late event from a unit that was cut off is
judged at the moment it happened, against the arming history), else `now`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from broker.i18n import render
from kernel.units import S
from protocol.alerting import Severity
from protocol.models import Event


class Rule(StrEnum):
    FORCED_DOOR = "forced-door"
    DOOR_HELD_OPEN = "door-held-open"
    INTRUSION = "intrusion"
    TAMPER = "tamper"
    UNIT_OFFLINE = "unit-offline"
    INTEGRITY = "integrity"
    PATROL_MISSED = "patrol-missed"
    CAMERA_FAULT = "camera-fault"
    UNIT_HEALTH = "unit-health"
    EVIDENCE_REFUSED = "evidence-refused"
    DURESS = "duress"
    ENROLMENT_REFUSED = "enrolment-refused"
    PANEL_CODE_REFUSED = "panel-code-refused"


SEVERITY: dict[Rule, Severity] = {
    Rule.FORCED_DOOR: Severity.CRITICAL,
    Rule.DOOR_HELD_OPEN: Severity.WARNING,
    Rule.INTRUSION: Severity.CRITICAL,
    Rule.TAMPER: Severity.CRITICAL,
    Rule.UNIT_OFFLINE: Severity.CRITICAL,
    Rule.INTEGRITY: Severity.CRITICAL,
    Rule.PATROL_MISSED: Severity.WARNING,
    Rule.CAMERA_FAULT: Severity.WARNING,
    Rule.UNIT_HEALTH: Severity.WARNING,
    Rule.EVIDENCE_REFUSED: Severity.CRITICAL,
    Rule.DURESS: Severity.CRITICAL,
    Rule.ENROLMENT_REFUSED: Severity.WARNING,
    Rule.PANEL_CODE_REFUSED: Severity.WARNING,
}

SILENT = frozenset({Rule.DURESS})
"""Rules whose alerts only notify the routes marked for them: never published on MQTT, never
on the post's page, never in InfluxDB (whoever forced the disarm may be watching those)."""


def is_silent(rule: str) -> bool:
    """An alert of this rule (its name, as an Alert stores it) is one of SILENT's."""
    return rule in SILENT


@dataclass(frozen=True, slots=True)
class AlertKey:
    """rule + site + device + sensor: repeated triggers of one key update one open alert."""

    rule: Rule
    site: str
    device: str
    sensor: str | None = None

    @property
    def text(self) -> str:
        return f"{self.rule.value}:{self.site}:{self.device}:{self.sensor or '-'}"

    @classmethod
    def parse(cls, text: str) -> AlertKey:
        rule, site, device, sensor = text.split(":")
        return cls(Rule(rule), site, device, None if sensor == "-" else sensor)

    @property
    def where(self) -> str:
        return f"{self.site}/{self.device}" + (f"/{self.sensor}" if self.sensor else "")


@dataclass(frozen=True, slots=True)
class Raise:
    """The condition is there (or happened again)."""

    key: AlertKey
    title: str
    detail: str
    at: int
    latched: bool = False  # an incident: stays open until an operator resolves it
    event_id: str | None = None
    msg: str | None = None  # title's msgid
    detail_msg: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def said(
        cls,
        key: AlertKey,
        msg: str,
        detail_msg: str | None,
        params: Mapping[str, str],
        at: int,
        *,
        latched: bool = False,
        event_id: str | None = None,
        detail: str = "",
    ) -> Raise:
        """From msgids and parameters (detail: the English detail when detail_msg is None)."""
        if detail_msg is not None:
            detail = render(detail_msg, params, "en")
        title = render(msg, params, "en")
        return cls(key, title, detail, at, latched, event_id, msg, detail_msg, dict(params))

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.key.rule]


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition is gone (ignored by latched alerts)."""

    key: AlertKey
    detail: str
    at: int
    msg: str | None = None  # detail's msgid
    params: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def said(cls, key: AlertKey, msg: str, params: Mapping[str, str], at: int) -> Clear:
        return cls(key, render(msg, params, "en"), at, msg, dict(params))


Signal = Raise | Clear


class Watch(BaseModel):
    """Base of per-rule state, persisted as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def event_time(event: Event, now: int) -> int:
    """When it happened: the unit's clock if synchronised (never in the future), else now."""
    return min(event.ts, now) if event.clock_synced else now


def time_params(zone: ZoneInfo, **times: int) -> dict[str, str]:
    """Times as message parameters (`<name>_at`), with the site's zone to show them in."""
    return {"tz": zone.key} | {f"{name}_at": str(ns) for name, ns in times.items()}


def local_time(ns: int, zone: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ns // S, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(ns: int) -> str:
    """A span for people: `2 h 5 min`, `3 min 4 s`, `9 s`."""
    s = ns // S
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"
