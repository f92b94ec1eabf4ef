"""The live page in its reader's language: alerts rendered from their msgids and parameters
(broker.alerts.localized), times in the site's zone (`02:29 WIB`), and the words post.js draws,
marked here with N_ (so `make i18n` finds them) and handed to the page as JSON."""

from __future__ import annotations

from typing import Any

from broker import i18n
from broker.alerts.localized import RULES, SEVERITIES, STATES, alert_text
from broker.i18n import N_
from broker.web.views import AlertView

# What post.js says; `{name}` fields are filled in the browser.
PAGE_WORDS = (
    N_("never"),
    N_("{n} s ago"),
    N_("{n} min ago"),
    N_("{n} h ago"),
    N_("{n} d ago"),
    N_("ALARM: {rule} — {where}"),
    N_(" (+{n} more)"),
    N_("{n} acknowledged, none waiting"),
    N_("All quiet"),
    N_("({n}) ALARM — Jaga"),
    N_("Jaga guard post"),
    N_("live"),
    N_("reconnecting…"),
    N_("No site to show for this account yet."),
    N_("Alarms ({n})"),
    N_("Alarms"),
    N_("No open alarm."),
    N_("raised {at} ({ago})"),
    N_("picture"),
    N_("Evidence: all {n} pictures"),
    N_("Evidence"),
    N_("Acknowledged by {by} at {at}"),
    N_("Acknowledging…"),
    N_("Acknowledge"),
    N_("not acknowledged"),
    N_("no answer from the server"),
    N_("arming unknown"),
    N_("armed in {n} s"),
    N_("alarm in {n} s"),
    N_("entry"),
    N_("by {by}"),
    N_("No unit has reported yet."),
    N_("OFFLINE"),
    N_("NOT SEEN"),
    N_("SILENT"),
    N_("ONLINE"),
    N_("OPEN"),
    N_("HELD OPEN"),
    N_("closed"),
    N_("MOTION"),
    N_("still"),
    N_("last {ago}"),
    N_("no motion yet"),
    N_("TAMPERED"),
    N_("check-in"),
    N_("no check-in yet"),
    N_("ok"),
    N_("Acknowledged"),
    N_("ALARM"),
    N_("Warning"),
    N_("latest picture from {device}"),
    N_("picture {ago}"),
    N_("no picture yet"),
    N_("heartbeat {ago}"),
    N_("no heartbeat yet"),
    N_("outbox {n}"),
    N_("DISK FULL"),
    N_("DISARMED"),
    N_("ARMING"),
    N_("ARMED"),
    N_("PENDING"),
    N_("door"),
    N_("motion"),
    N_("tamper"),
    N_("patrol"),
    N_("camera"),
    N_("Sound is off — tap to enable"),
    # zones, bypasses and the operators' controls (#18)
    N_("{zone}: {state}"),
    N_("{zone}: waiting for a second operator ({by}, {n} s)"),
    N_("bypassed {sensor} until {at} — {by}: {reason}"),
    N_("Arming (operators)"),
    N_("Site"),
    N_("Zone"),
    N_("every zone"),
    N_("PIN (if you have one)"),
    N_("Arm"),
    N_("Disarm"),
    N_("Bypass a sensor"),
    N_("Sensor (unit/sensor)"),
    N_("For"),
    N_("{n} min"),
    N_("{n} h"),
    N_("Reason"),
    N_("Bypass"),
    N_("Lift"),
    N_("Lift the bypass of {sensor}"),
    N_("done"),
    N_("not done"),
)


def page_words(lang: str) -> dict[str, str]:
    """msgid -> the reader's words, for post.js's `t()` (rules, severities, states too)."""
    t = i18n.translator(lang)
    ids = (*PAGE_WORDS, *RULES.values(), *SEVERITIES.values(), *STATES.values())
    return {msgid: t.gettext(msgid) for msgid in ids}


def zone_name(tz: str, now_ns: int) -> str:
    """`WIB`, `WITA`, `WIT` (or what the zone database calls another zone)."""
    return i18n.clock(now_ns, tz).split(" ", 1)[1]


def localize_alert(data: dict[str, Any], lang: str, tz: str) -> dict[str, Any]:
    """An alert as the page sends it, its words in lang and its times as `02:29 WIB`."""
    text = alert_text(AlertView.model_validate(data), lang)
    out = dict(data, title=text.title, detail=text.detail, note=text.note)
    tz = data.get("params", {}).get("tz", tz)
    out["raised_clock"] = i18n.clock(data["raised_at"], tz)
    out["acked_clock"] = i18n.clock(data["acked_at"], tz) if data.get("acked_at") else None
    return out


def localize_site(data: dict[str, Any], lang: str, tz: str, now_ns: int) -> dict[str, Any]:
    alerts = [localize_alert(a, lang, tz) for a in data.get("alerts", [])]
    return dict(data, alerts=alerts, tz=tz, zone=zone_name(tz, now_ns))
