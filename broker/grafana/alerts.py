"""Alerts: every alert's lifecycle (raised, acknowledged by whom, closed) and counts per rule.

TODO(#5): the `alert` measurement comes with the alert work; see alert_schema for what these
queries expect of it.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import common, dashboard

from broker.grafana import alert_schema as schema
from broker.grafana import datasource
from broker.grafana import panels as p
from broker.grafana.panels import GREY, SITE_REGEX, q

UID = "jaga-alerts"
TITLE = "Jaga — Alerts"
LIFECYCLE = {"raised": "raised_ns", "acknowledged": "acked_ns", "closed": "closed_ns"}

ALERT_TABLE = (
    'SELECT "id", "change", "status", "severity", "rule", "device", "sensor", "title", "by", '
    '"count", '
    + ", ".join(f'"{field}" / 1000000 AS "{name}"' for name, field in LIFECYCLE.items())
    + f' FROM "{schema.ALERT}" WHERE {SITE_REGEX} AND $timeFilter ORDER BY time DESC LIMIT 1000'
)
RAISED_PER_RULE = (
    f'SELECT count("id") FROM "{schema.ALERT}" WHERE {SITE_REGEX} '
    'AND "change" = \'raised\' AND $timeFilter GROUP BY time($__interval), "rule" fill(0)'
)


def _lifecycle_column(
    name: str,
) -> tuple[dashboard.MatcherConfig, list[dashboard.DynamicConfigValue]]:
    """A lifecycle time in ms as a date, and 0 (not yet) as a dash."""
    return (
        dashboard.MatcherConfig(id_val="byName", options=name),
        [
            dashboard.DynamicConfigValue(id_val="unit", value="dateTimeAsIso"),
            dashboard.DynamicConfigValue(id_val="mappings", value=p.value_map({"0": ("—", GREY)})),
        ],
    )


def build() -> dashboard.Dashboard:
    table = p.sorted_table(
        "Alert lifecycle",
        q(ALERT_TABLE).table(),
        sort_by="Time",
        desc=True,
        span=24,
        height=12,
    ).description(
        "One row per change of an alert (raised, repeated, acknowledged, cleared, resolved), "
        "newest first; each row carries the alert's raised, acknowledged and closed times so "
        "far, and who acknowledged or resolved it."
    )
    for column in LIFECYCLE:
        table = table.with_override(*_lifecycle_column(column))
    per_rule = (
        timeseries.Panel()
        .title("Alerts raised per interval, by rule")
        .datasource(datasource.ref())
        .with_target(q(RAISED_PER_RULE).alias("$tag_rule"))
        .span(24)
        .height(8)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(70)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
        .min(0)
        .decimals(0)
    )
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .tags(["jaga"])
        .description("Alert lifecycle times and how often each rule fires.")
        .refresh("30s")
        .time("now-7d", "now")
        .readonly()
        .with_variable(p.site_variable(multi=True))
        .link(p.dashboard_link("Overview", "jaga-overview"))
        .with_panel(table)
        .with_panel(per_rule)
    )
    return p.finish(board)
