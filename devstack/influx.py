"""Run Debian's InfluxDB 1.6 on loopback ports with its data in a temp dir, and query it.

Found by running ``influxd`` 1.6.7~rc0 (Debian bookworm):

- Debian patched usage reporting to opt-in: the key is ``reporting-enabled`` (default
  false); upstream's ``reporting-disabled`` is accepted but ignored. Unknown keys are
  silently ignored in general, so a misspelt key changes nothing: check
  ``influxd config -config FILE`` when adding one.
- The RPC ``bind-address`` (backup/restore, default 127.0.0.1:8088) is always bound, so
  each instance needs its own free port for it as well as for ``[http]``.
- Logs go to stderr (there is no log-file option in 1.6); we redirect them to the log.
- Ready (``/ping`` answers 204) 20-50 ms after exec (small data dir); stops in ~5 ms.
- There is no ``/api/v2/write``: see ``devstack.forwarder``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from devstack.ports import free_port
from devstack.process import ManagedProcess

INFLUXD = "/usr/bin/influxd"

_CONFIG = """\
reporting-enabled = false
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{workdir}/meta"
  logging-enabled = false

[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  log-enabled = false

[logging]
  suppress-logo = true
"""


class QueryError(RuntimeError):
    """InfluxDB answered a query with an error."""


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxDB(ManagedProcess):
    """``influxd -config <workdir>/influxdb.conf``; ready when ``GET /ping`` gives 204.

    UDP, Graphite, collectd and OpenTSDB listeners are off (their default); HTTP auth is
    off. Ports stay the same across ``restart()``.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__("influxd", workdir / "influxd.log", cwd=workdir)
        self.workdir = workdir
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.config_path = workdir / "influxdb.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            _CONFIG.format(
                workdir=self.workdir.resolve(), rpc_port=self.rpc_port, http_port=self.http_port
            )
        )

    def command(self) -> list[str]:
        return [INFLUXD, "-config", str(self.config_path)]

    def is_ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:
            return bool(resp.status == 204)

    # -- HTTP API (standard library only) --------------------------------------------
    def _query_raw(self, q: str, db: str | None, timeout: float) -> dict[str, Any]:
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(f"{self.url}/query", data=data, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise QueryError(f"{err.code} for {q!r}: {detail}") from err
        if "error" in body:
            raise QueryError(f"{q!r}: {body['error']}")
        return body

    def query(self, q: str, db: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Run InfluxQL (times as ns integers); one dict per row, series tags merged in."""
        rows: list[dict[str, Any]] = []
        for result in self._query_raw(q, db, timeout).get("results", []):
            if "error" in result:
                raise QueryError(f"{q!r}: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows

    def create_database(self, name: str) -> None:
        self.query(f"CREATE DATABASE {quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.query(f"DROP DATABASE {quote_ident(name)}")

    def count(self, measurement: str, db: str, where: str = "", field: str | None = None) -> int:
        """Stored points of ``measurement`` (0 if none).

        Without ``field`` this is ``COUNT(*)``'s largest column: exact when some field is
        in every point. Points with the same series and timestamp are one point in InfluxDB.
        """
        target = "*" if field is None else quote_ident(field)
        q = f"SELECT COUNT({target}) FROM {quote_ident(measurement)}"
        if where:
            q += f" WHERE {where}"
        counts = [v for row in self.query(q, db) for k, v in row.items() if k.startswith("count")]
        return max(counts, default=0)

    def write_lines(self, lines: str, db: str, rp: str | None = None, precision: str = "n") -> None:
        """Write line protocol through the 1.x ``/write`` endpoint (seeding tests)."""
        params = {"db": db, "precision": precision}
        if rp is not None:
            params["rp"] = rp
        url = f"{self.url}/write?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=lines.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30.0):
                pass
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise QueryError(f"write {err.code}: {detail}") from err
