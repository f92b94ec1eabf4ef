"""Reading InfluxDB: a small InfluxQL client (GET /query), which InfluxDB 1.8, 2.x (DBRP) and 3
Core all answer. broker.influx writes; this reads.

influxdb-client speaks only Flux for queries, so audit, the evidence viewer and export, and the
demo summary read through this. (broker.grafana.influxql is another thing: dashboard query text.)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class QueryFailed(Exception):
    """The query could not run; the message says why."""


class InfluxReader:
    """Rows of InfluxQL queries against one database."""

    def __init__(self, url: str, database: str, token: str = "", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.token = token
        self.timeout = timeout

    def rows(self, query: str) -> list[dict[str, Any]]:
        """Run a query; one dict per row with the series' tags merged in; times in ns."""
        params = urllib.parse.urlencode({"db": self.database, "q": query, "epoch": "ns"})
        request = urllib.request.Request(f"{self.url}/query?{params}")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise QueryFailed(f"InfluxDB answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise QueryFailed(f"cannot query InfluxDB at {self.url}: {exc}") from None
        out: list[dict[str, Any]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise QueryFailed(f"InfluxQL error: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    row = dict(zip(series["columns"], values, strict=False))
                    row.update(tags)
                    row.setdefault("_measurement", series.get("name"))
                    out.append(row)
        return out


def quote_string(value: str) -> str:
    """A string literal for InfluxQL."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
