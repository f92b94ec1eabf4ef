"""Site detail: what happened at one site, door by door, with links to the evidence pictures."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import statetimeline, timeseries
from grafana_foundation_sdk.models import common, dashboard

from broker.grafana import alert_schema as alerts
from broker.grafana import datasource
from broker.grafana import panels as p
from broker.grafana.influxql import InfluxAnnotation
from broker.grafana.panels import GREEN, ORANGE, RED, q

UID = "jaga-site"
TITLE = "Jaga — Site detail"

SITE = "\"site\" = '$site'"

# Raw points, not GROUP BY time: a door open for two seconds must show at any zoom.
DOOR_TIMELINE = (
    f'SELECT "active" FROM "event" WHERE {SITE} AND "kind" = \'door\' AND $timeFilter '
    'GROUP BY "device", "sensor"'
)
MOTION_TIMELINE = (
    f'SELECT "active" FROM "event" WHERE {SITE} AND "kind" = \'motion\' AND $timeFilter '
    'GROUP BY "device", "sensor"'
)
EVENTS_PER_INTERVAL = (
    f'SELECT count("seq") FROM "event" WHERE {SITE} AND $timeFilter '
    'GROUP BY time($__interval), "kind" fill(0)'
)
EVENT_LIST = (
    'SELECT "device", "sensor", "kind", "state", "seq", "id", "snapshots" FROM "event" '
    f"WHERE {SITE} AND $timeFilter ORDER BY time DESC LIMIT 1000"
)
# TODO(#5): alert points come with the alert work.
ALERT_ANNOTATIONS = (
    f'SELECT "title", "id", "rule", "severity", "device" FROM "{alerts.ALERT}" '
    f"WHERE {SITE} AND \"change\" = 'raised' AND $timeFilter"
)


def _timeline(title: str, query: str, mapping: dict[str, tuple[str, str]]) -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title(title)
        .datasource(datasource.ref())
        .with_target(q(query).alias("$tag_device $tag_sensor"))
        .span(24)
        .height(8)
        .mappings(p.value_map(mapping))
        .merge_values(True)
        .show_value(common.VisibilityMode.AUTO)
        .row_height(0.8)
        .fill_opacity(80)
    )


def build(evidence_url: str = p.EVIDENCE_URL) -> dashboard.Dashboard:
    doors = _timeline(
        "Doors", DOOR_TIMELINE, {"1": ("open", RED), "0": ("closed", GREEN)}
    ).description("Every door's state over time (held-open counts as open).")
    motion = _timeline(
        "Motion", MOTION_TIMELINE, {"1": ("motion", ORANGE), "0": ("still", "transparent")}
    ).description("When each motion sensor saw movement.")
    per_interval = (
        timeseries.Panel()
        .title("Events per interval, by kind")
        .datasource(datasource.ref())
        .with_target(q(EVENTS_PER_INTERVAL).alias("$tag_kind"))
        .span(24)
        .height(7)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(70)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
        .min(0)
        .decimals(0)
    )
    events = (
        p.sorted_table(
            "Events", q(EVENT_LIST).table(), sort_by="Time", desc=True, span=24, height=12
        )
        .with_override(*p.evidence_link("id"))
        .description("Every stored event, newest first; the id opens its evidence pictures.")
    )
    annotation = (
        InfluxAnnotation("Alerts", datasource.ref(), ALERT_ANNOTATIONS)
        .icon_color("red")
        .text_column("title")
        .tags_column("rule,severity,device")
    )
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .tags(["jaga"])
        .description("One site: door and motion timelines, every event with its evidence, alerts.")
        .refresh("30s")
        .time("now-6h", "now")
        .readonly()
        .with_variable(p.site_variable(multi=False))
        .with_variable(p.evidence_variable(evidence_url))
        .annotation(annotation)
        .link(p.dashboard_link("Overview", "jaga-overview"))
        .link(p.dashboard_link("Alerts", "jaga-alerts"))
        .with_panel(doors)
        .with_panel(motion)
        .with_panel(per_interval)
        .with_panel(events)
    )
    return p.finish(board)
