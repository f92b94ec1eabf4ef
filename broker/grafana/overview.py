"""Overview: the control room's wall screen, a row per site of what is true right now.

The "now" panels ask for the last point ever (no time filter): a door opened last week and
never closed is open today, and a unit that came online a month ago is still online.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard

from broker.grafana import alert_schema as alerts
from broker.grafana import panels as p
from broker.grafana.panels import BLUE, GREEN, GREY, RED, SITE_REGEX, q

UID = "jaga-overview"
TITLE = "Jaga — Overview"

UNITS = f'SELECT last("online") FROM "status" WHERE {SITE_REGEX} GROUP BY "device"'
DOORS = (
    f'SELECT last("active") FROM "event" WHERE {SITE_REGEX} AND "kind" = \'door\' '
    'GROUP BY "device", "sensor"'
)
# One tile per zone (#18); points from before zones have no zone tag and are left out.
ARMED = (
    f'SELECT last("armed") FROM "{alerts.ARMING}" WHERE {SITE_REGEX} AND "zone" != \'\' '
    'GROUP BY "zone"'
)
# A sensor's latest bypass point says whether it is bypassed now (a bypass's end is a point).
BYPASSED = (
    'SELECT "by", "reason", "until_ns" / 1000000 AS "until" FROM ('
    'SELECT last("active") AS "active", last("by") AS "by", last("reason") AS "reason", '
    f'last("until_ns") AS "until_ns" FROM "{alerts.BYPASS}" WHERE {SITE_REGEX} '
    'GROUP BY "zone", "device", "sensor"'
    ') WHERE "active" = 1 GROUP BY "zone", "device", "sensor"'
)
_KEY = ", ".join(f'"{tag}"' for tag in alerts.ALERT_KEY)
# The latest point of each alert key says whether it is open; count the open ones.
ACTIVE_ALERTS = (
    'SELECT count("open") AS "active" FROM ('
    f'SELECT last("open") AS "open" FROM "{alerts.ALERT}" WHERE {SITE_REGEX} GROUP BY {_KEY}'
    ') WHERE "open" = 1 GROUP BY "severity"'
)
LAST_MOTION = (
    f'SELECT last("id") AS "event" FROM "event" WHERE {SITE_REGEX} '
    'AND "kind" = \'motion\' AND "state" = \'motion\' GROUP BY "device", "sensor"'
)
LAST_CHECKIN = (
    f'SELECT last("id") AS "event" FROM "event" WHERE {SITE_REGEX} '
    'AND "kind" = \'patrol\' GROUP BY "device", "sensor"'
)


def build(evidence_url: str = p.EVIDENCE_URL) -> dashboard.Dashboard:
    units = (
        p.tiles("Units", q(UNITS).alias("$tag_device"), span=8, height=5)
        .mappings(p.value_map({"1": ("ONLINE", GREEN), "0": ("OFFLINE", RED)}))
        .no_value("no unit has reported")
        .description("Each unit's last birth (online) or last will (offline) message.")
    )
    doors = p.tiles("Doors now", q(DOORS).alias("$tag_device $tag_sensor"), span=8, height=5)
    doors = doors.mappings(p.value_map({"1": ("OPEN", RED), "0": ("closed", GREEN)})).description(
        "Each door's last state; held-open counts as open."
    )
    armed = (
        p.tiles("Armed", q(ARMED).alias("$tag_zone"), span=4, height=5)
        .mappings(p.value_map({"1": ("ARMED", BLUE), "0": ("disarmed", GREY)}))
        .no_value("arming state unknown")
        .description("Each zone: armed, or in its entry delay (doors and motion now raise alarms).")
    )
    bypassed = (
        p.sorted_table("Bypassed now", q(BYPASSED).table(), sort_by="until", desc=False, height=5)
        .with_override(
            dashboard.MatcherConfig(id_val="byName", options="until"),
            [dashboard.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")],
        )
        .no_value("no sensor bypassed")
        .description(
            "Sensors whose openings raise no alarm until the time shown (or their zone's "
            "disarm), who bypassed them and why; their events are still stored."
        )
    )
    # TODO(#5): alert points come with the alert work.
    active = (
        p.tiles("Active alerts", q(ACTIVE_ALERTS).alias("$tag_severity"), span=4, height=5)
        .thresholds(p.thresholds(GREEN, (1, RED)))
        .no_value("none")
        .description("Alerts raised or acknowledged and not yet cleared, by severity.")
    )
    motion = (
        p.sorted_table("Last motion", q(LAST_MOTION).table(), sort_by="Time", desc=True, height=7)
        .with_override(*p.time_from_now())
        .with_override(*p.evidence_link("event"))
        .description("When each motion sensor last saw movement; the event links to its pictures.")
    )
    checkin = (
        p.sorted_table(
            "Last patrol check-in", q(LAST_CHECKIN).table(), sort_by="Time", desc=False, height=7
        )
        .with_override(*p.time_from_now())
        .with_override(*p.evidence_link("event"))
        .description("Each post's last check-in, the longest ago first.")
    )
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .tags(["jaga"])
        .description("Wall screen: per site, units, doors, arming and alerts as they are now.")
        .refresh("10s")
        .time("now-24h", "now")
        .readonly()
        .with_variable(p.site_variable(multi=True))
        .with_variable(p.evidence_variable(evidence_url))
        .link(p.dashboard_link("Site detail", "jaga-site"))
        .link(p.dashboard_link("Fleet health", "jaga-fleet"))
        .link(p.dashboard_link("Alerts", "jaga-alerts"))
        .with_row(dash.Row("$site").repeat("site"))
        .with_panel(units)
        .with_panel(doors)
        .with_panel(armed)
        .with_panel(active)
        .with_panel(bypassed)
        .with_panel(motion)
        .with_panel(checkin)
    )
    return p.finish(board)
