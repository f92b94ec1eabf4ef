"""Every InfluxQL query a dashboard's JSON makes Grafana run: panel targets, annotations, variables.

Read from the JSON Grafana loads (not from the builders), so what is checked is what is served.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Source = Literal["panel", "annotation", "variable"]


@dataclass(frozen=True)
class DashboardQuery:
    dashboard: str
    """The dashboard's uid."""
    where: str
    """The panel's title, the annotation's name or the variable's name."""
    ref_id: str
    query: str
    source: Source
    result_format: str = "time_series"
    panel: Mapping[str, Any] | None = None
    """The panel's JSON, for the options a test applies as Grafana would (sorting, links)."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dashboard, self.where, self.ref_id)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def dashboard_queries(board: Mapping[str, Any]) -> list[DashboardQuery]:
    uid = str(board["uid"])
    found: list[DashboardQuery] = []
    for panel in _panels(board.get("panels") or []):
        for target in panel.get("targets") or []:
            found.append(
                DashboardQuery(
                    uid,
                    str(panel.get("title", "")),
                    str(target["refId"]),
                    str(target["query"]),
                    "panel",
                    str(target.get("resultFormat", "time_series")),
                    panel,
                )
            )
    for annotation in (board.get("annotations") or {}).get("list") or []:
        target = annotation.get("target") or {}
        if "query" in target:
            found.append(
                DashboardQuery(uid, str(annotation["name"]), "Anno", target["query"], "annotation")
            )
    for variable in (board.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            found.append(
                DashboardQuery(
                    uid, str(variable["name"]), "var", str(variable["query"]), "variable"
                )
            )
    return found
