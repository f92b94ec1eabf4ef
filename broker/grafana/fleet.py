"""Fleet health: is every unit alive and well, and which one has been silent the longest."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import dashboard

from broker.grafana import datasource
from broker.grafana import panels as p
from broker.grafana.panels import GREEN, ORANGE, RED, SITE_REGEX, q

UID = "jaga-fleet"
TITLE = "Jaga — Fleet health"
UNIT = "$tag_site/$tag_device"


def _last(field: str) -> str:
    return f'SELECT last("{field}") FROM "heartbeat" WHERE {SITE_REGEX} GROUP BY "site", "device"'


def _over_time(agg: str, field: str) -> str:
    return (
        f'SELECT {agg}("{field}") FROM "heartbeat" WHERE {SITE_REGEX} AND $timeFilter '
        'GROUP BY time($__interval), "site", "device" fill(none)'
    )


# One selector only: with two, InfluxQL returns the range's start, not the heartbeat's time.
SILENT = (
    f'SELECT last("interval_s") AS "interval_s" FROM "heartbeat" WHERE {SITE_REGEX} '
    'GROUP BY "site", "device"'
)
OUTBOX = _last("outbox_depth")
DISK_FREE = _last("disk_free_mb")
CLOCK_SYNCED = _last("clock_synced")
CERT_DAYS = _last("cert_days_left")
CPU_TEMP = _over_time("mean", "cpu_temp_c")
OUTBOX_OVER_TIME = _over_time("max", "outbox_depth")


def _series(title: str, query: str, unit: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .datasource(datasource.ref())
        .with_target(q(query).alias(UNIT))
        .span(12)
        .height(8)
        .unit(unit)
    )


def build() -> dashboard.Dashboard:
    silent = (
        p.sorted_table(
            "Last heartbeat, silent longest first",
            q(SILENT).table(),
            sort_by="Time",
            desc=False,
            span=24,
            height=8,
        )
        .with_override(*p.time_from_now())
        .description(
            "When each unit last sent a heartbeat, and its interval: a unit silent for three "
            "intervals is offline however its status reads."
        )
    )
    outbox = (
        p.tiles("Outbox depth", q(OUTBOX).alias(UNIT), span=6)
        .thresholds(p.thresholds(GREEN, (1, ORANGE), (1000, RED)))
        .decimals(0)
        .description("Events waiting on the unit for the broker's acknowledgement.")
    )
    disk = (
        p.tiles("Disk free", q(DISK_FREE).alias(UNIT), span=6)
        .unit("decmbytes")
        .thresholds(p.thresholds(RED, (500, ORANGE), (2000, GREEN)))
    )
    clock = (
        p.tiles("Clock synchronised", q(CLOCK_SYNCED).alias(UNIT), span=6, fields=p.NOT_TIME)
        .mappings(p.bool_map(("synced", GREEN), ("NOT SYNCED", ORANGE)))
        .description("A unit without NTP stamps events with a clock nobody can vouch for.")
    )
    cert = (
        p.tiles("Certificate days left", q(CERT_DAYS).alias(UNIT), span=6)
        .thresholds(p.thresholds(RED, (14, ORANGE), (30, GREEN)))
        .decimals(0)
        .description("Days until the unit's TLS certificate expires; re-enrol before it does.")
    )
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .tags(["jaga"])
        .description("Per unit: heartbeat age, temperature, disk, outbox, clock, certificate.")
        .refresh("30s")
        .time("now-6h", "now")
        .readonly()
        .with_variable(p.site_variable(multi=True))
        .link(p.dashboard_link("Overview", "jaga-overview"))
        .with_panel(silent)
        .with_panel(outbox)
        .with_panel(disk)
        .with_panel(clock)
        .with_panel(cert)
        .with_panel(_series("CPU temperature", CPU_TEMP, "celsius"))
        .with_panel(_series("Outbox depth over time", OUTBOX_OVER_TIME, "short"))
    )
    return p.finish(board)
