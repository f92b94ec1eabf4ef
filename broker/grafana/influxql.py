"""Typed InfluxQL targets for the Grafana Foundation SDK, which ships no InfluxDB query builder.

A panel target is what Grafana's InfluxDB datasource stores for a raw (hand-written) InfluxQL
query: ``{"refId", "datasource", "query", "rawQuery": true, "resultFormat", "alias"}``. An
annotation keeps the same query under ``target`` (Grafana 8.x and later; older versions migrate
a top-level ``query`` into it), with the columns that make the text and tags of each marker.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE_TYPE = "influxdb"

ResultFormat = Literal["time_series", "table", "logs"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel."""

    def __init__(
        self,
        ref_id: str = "A",
        query: str = "",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        datasource: dashboard.DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format: ResultFormat = result_format
        self.alias = alias
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(
            ref_id=str(data.get("refId", "A")),
            query=str(data.get("query", "")),
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            datasource=dashboard.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
            hide=data.get("hide"),
        )


def register() -> None:
    """Let the SDK's JSON reader turn stored InfluxDB targets back into InfluxQLQuery."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(
            identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json
        )
    )


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder of a raw InfluxQL target, in the SDK's fluent style."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        """Rows with one column per field and tag, for table panels."""
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        """Series name, e.g. ``$tag_device``; Grafana fills in the series' tag values."""
        self._internal.alias = alias
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = ref
        return self


class InfluxAnnotationQuery(dashboard.AnnotationQuery):
    """An annotation whose markers come from an InfluxQL query."""

    def __init__(
        self,
        name: str,
        datasource: dashboard.DataSourceRef,
        query: str,
        icon_color: str = "red",
        text_column: str = "",
        tags_column: str = "",
        enable: bool = True,
    ) -> None:
        super().__init__(name=name, datasource=datasource, enable=enable, icon_color=icon_color)
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload["target"] = {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "fromAnnotations": True,
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
            "titleColumn": "",
            "timeEndColumn": "",
        }
        return payload


class InfluxAnnotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    """Builder of an InfluxQL annotation; ``text`` and ``tags`` name result columns."""

    def __init__(self, name: str, datasource: dashboard.DataSourceRef, query: str) -> None:
        self._internal = InfluxAnnotationQuery(name, datasource, query)

    def build(self) -> dashboard.AnnotationQuery:
        return self._internal

    def icon_color(self, color: str) -> Self:
        self._internal.icon_color = color
        return self

    def text_column(self, column: str) -> Self:
        self._internal.text_column = column
        return self

    def tags_column(self, columns: str) -> Self:
        self._internal.tags_column = columns
        return self
