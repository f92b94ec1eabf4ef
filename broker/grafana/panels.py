"""Pieces every Jaga dashboard shares: targets on our datasource, value maps, variables, ids."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table
from grafana_foundation_sdk.models import common, dashboard

from broker.grafana import datasource
from broker.grafana.influxql import InfluxQL

GREEN, RED, ORANGE, BLUE, GREY = "green", "red", "orange", "blue", "text"
SITE_REGEX = '"site" =~ /^$site$/'
"""The filter of panels that follow a multi-value ``site`` variable (Grafana writes ``(a|b)``)."""


def q(query: str, ref_id: str = "A") -> InfluxQL:
    """A raw InfluxQL target on the Jaga datasource."""
    return InfluxQL(query).ref_id(ref_id).datasource(datasource.ref())


def value_map(entries: dict[str, tuple[str, str]]) -> list[dashboard.ValueMapping]:
    """Values shown as words in a colour, e.g. ``{"1": ("OPEN", "red")}``."""
    return [
        dashboard.ValueMap(
            options={
                value: dashboard.ValueMappingResult(text=text, color=color, index=i)
                for i, (value, (text, color)) in enumerate(entries.items())
            }
        )
    ]


def bool_map(true: tuple[str, str], false: tuple[str, str]) -> list[dashboard.ValueMapping]:
    """Booleans shown as words in a colour."""
    return [
        dashboard.SpecialValueMap(
            options=dashboard.DashboardSpecialValueMapOptions(
                match=match, result=dashboard.ValueMappingResult(text=text, color=color, index=i)
            )
        )
        for i, (match, (text, color)) in enumerate(
            [(dashboard.SpecialValueMatch.TRUE, true), (dashboard.SpecialValueMatch.FALSE, false)]
        )
    ]


def thresholds(base: str, *steps: tuple[float, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps(
            [dashboard.Threshold(value=None, color=base)]
            + [dashboard.Threshold(value=v, color=c) for v, c in steps]
        )
    )


NOT_TIME = "/^(?!Time$).*$/"
"""Stat fields for text and boolean values (the default takes numbers only), minus the time."""


def tiles(
    title: str, query: InfluxQL, *, span: int = 12, height: int = 6, fields: str = ""
) -> stat.Panel:
    """One coloured tile per series, showing its last value: the wall screen's building block."""
    return (
        stat.Panel()
        .title(title)
        .datasource(datasource.ref())
        .with_target(query)
        .span(span)
        .height(height)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .orientation(common.VizOrientation.AUTO)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .reduce_options(
            common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields(fields).values(False)
        )
    )


def sorted_table(
    title: str, query: InfluxQL, *, sort_by: str, desc: bool, span: int = 12, height: int = 8
) -> table.Panel:
    """A table sorted by one column, so the row that needs attention comes first."""
    return (
        table.Panel()
        .title(title)
        .datasource(datasource.ref())
        .with_target(query)
        .span(span)
        .height(height)
        .sort_by([common_builders.TableSortByFieldState().display_name(sort_by).desc(desc)])
    )


def time_from_now(
    column: str = "Time",
) -> tuple[dashboard.MatcherConfig, list[dashboard.DynamicConfigValue]]:
    """Show a time column as "3 minutes ago": how stale it is is what the operator needs."""
    return (
        dashboard.MatcherConfig(id_val="byName", options=column),
        [dashboard.DynamicConfigValue(id_val="unit", value="dateTimeFromNow")],
    )


def site_variable(*, multi: bool) -> dash.QueryVariable:
    """Sites that have stored events; multi-value with All on the overviews, one on the detail."""
    variable = (
        dash.QueryVariable("site")
        .label("Site")
        .datasource(datasource.ref())
        .query('SHOW TAG VALUES FROM "event" WITH KEY = "site"')
        .refresh(dashboard.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        variable = variable.current(dashboard.VariableOption(text="All", value="$__all"))
    return variable


def dashboard_link(title: str, uid: str) -> dash.DashboardLink:
    """A link to another Jaga dashboard that keeps the time range and the site."""
    return (
        dash.DashboardLink(title)
        .type(dashboard.DashboardLinkType.LINK)
        .url(f"/d/{uid}")
        .include_vars(True)
        .keep_time(True)
        .icon("dashboard")
    )


def finish(builder: dash.Dashboard) -> dashboard.Dashboard:
    """Build, number every panel (rows' panels too) so links and repeats are stable."""
    board = builder.build()
    if board.annotations is None or board.annotations.list_val is None:
        board.annotations = dashboard.AnnotationContainer(list_val=[])  # Grafana expects a list
    next_id = 1
    for panel in board.panels or []:
        inner = panel.panels if isinstance(panel, dashboard.RowPanel) else []
        for each in (panel, *inner):
            each.id_val = next_id
            next_id += 1
            if isinstance(each, dashboard.Panel) and each.options is None:
                each.options = {}  # the plugin's defaults, rather than null
    return board


EVIDENCE_URL = "http://localhost:8080"
"""Where the guard-post page (issue #10) serves its evidence viewer, ``<url>/events/<id>``."""


def evidence_variable(default: str) -> dash.TextBoxVariable:
    """The guard-post page's base URL, a dashboard variable so each control room sets its own."""
    return (
        dash.TextBoxVariable("evidence_url")
        .label("Evidence viewer")
        .description("Base URL of the guard-post page; event links open <url>/events/<id>")
        .default_value(default)
        .current(dashboard.VariableOption(text=default, value=default))
    )


EVIDENCE_LINK = "${evidence_url}/events/${__value.raw}"
"""A cell's event id becomes a link to its pictures; Grafana fills in both placeholders."""


def evidence_link(
    column: str,
) -> tuple[dashboard.MatcherConfig, list[dashboard.DynamicConfigValue]]:
    """Make the event-id column open the evidence viewer for that event."""
    link = {"title": "Evidence pictures of this event", "url": EVIDENCE_LINK, "targetBlank": True}
    return (
        dashboard.MatcherConfig(id_val="byName", options=column),
        [dashboard.DynamicConfigValue(id_val="links", value=[link])],
    )
