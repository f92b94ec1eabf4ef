"""Run Debian's VictoriaMetrics on loopback: a second, independent ``/api/v2/write`` server.

Found with victoria-metrics 1.79.5 (Debian bookworm), see tests/integration/test_devstack.py:

- Influx line ``door,site=s1,device=d1 open=1i,seq=7i 1700000000123456789`` becomes one
  series per field, named ``<measurement>_<field>``: ``door_open`` and ``door_seq``, each
  labelled ``site`` and ``device``; bucket and org are not kept as labels. Values become
  float64: booleans 1/0, string fields 0 (their text is lost). Timestamps are cut to
  milliseconds.
- A new series is not visible to searches or exports for about 10 s after its write;
  ``export()`` calls ``/internal/force_flush`` first so a test can read its write back.
- The default retention (1 month) rejects older timestamps; we set 100 years.
- Ready (``/health`` 200) about 40 ms after exec.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from devstack.ports import free_port
from devstack.process import ManagedProcess

VICTORIA_METRICS = "/usr/bin/victoria-metrics"


class VictoriaMetrics(ManagedProcess):
    """``victoria-metrics`` with storage in ``workdir``; ready when ``GET /health`` is 200."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("victoria-metrics", workdir / "victoria-metrics.log", cwd=workdir)
        self.workdir = workdir
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            VICTORIA_METRICS,
            f"-storageDataPath={self.workdir.resolve() / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
        ]

    def is_ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as resp:
            return bool(resp.status == 200)

    def flush(self) -> None:
        """Make everything written so far visible to searches and exports."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=30.0):
            pass

    def export(self, match: str) -> list[dict[str, Any]]:
        """``/api/v1/export?match[]=match``: one dict per series, with ``metric``
        (labels, ``__name__`` included), ``values`` and ``timestamps`` (ms)."""
        self.flush()
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30.0) as resp:
            lines = resp.read().decode().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
