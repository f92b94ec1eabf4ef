"""What every benchmark reports: the machine, the versions, each figure beside its reference.

A result is written to bench/results/<name>.json and printed as a table. The load average
before and after is kept too: these machines are shared, so a figure taken under load says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.stats import ratio
from kernel.files import Durability, atomic_write

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent
WORK = REPO / "run" / "bench"


def workdir(name: str) -> Path:
    """A fresh folder for one benchmark's servers and files (run/ is not version controlled)."""
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every benchmark takes (--quick runs a reduced size to validate it), and
    any of its own that `extra` adds."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if extra is not None:
        extra(parser)
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK") == "1",
        help="reduced size, to check that the benchmark works (also BENCH_QUICK=1)",
    )
    return parser.parse_args()


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    out = (done.stdout or done.stderr).strip().splitlines()
    return out[0] if out else "unknown"


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and kernel of this machine."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_mb = None
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        mem_mb = int(m.group(1)) // 1024 if m else None
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_mb": mem_mb,
        "kernel": platform.release(),
        "hostname": platform.node(),
    }


def versions() -> dict[str, str]:
    """Versions of everything the figures depend on."""
    mosq = _first_line(["mosquitto", "-h"])
    influxd = _first_line(["influxd", "version"])
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "paho-mqtt": _dist("paho-mqtt"),
        "mosquitto": mosq.removeprefix("mosquitto version ").strip(),
        "influxd": influxd.removeprefix("InfluxDB ").split(" (")[0].strip(),
        "cryptography": _dist("cryptography"),
        "influxdb-client": _dist("influxdb-client"),
        "pydantic": _dist("pydantic"),
        "jaga": _dist("jaga"),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Row:
    """One line of the table: a figure, its reference from the same run, and its target."""

    figure: str
    value: float | None
    unit: str
    reference: str | None = None
    ref_value: float | None = None
    target: str | None = None
    met: bool | None = None
    key: bool = False
    """Shown in the summary (`make bench`, README) even without a target."""
    ratio: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = ratio(self.value, self.ref_value)


class Report:
    """Collects the figures of one benchmark run; `finish()` prints and writes them."""

    def __init__(self, name: str, quick: bool, params: dict[str, Any]) -> None:
        self.name = name
        self.quick = quick
        self.params = params
        self.figures: dict[str, Any] = {}
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self._started = time.monotonic()
        self._when = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        self._load_before = load_average()

    def figure(self, key: str, value: Any) -> None:
        self.figures[key] = value

    def row(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "command": f".venv/bin/python -m bench.{self.name}"
            + (" --quick" if self.quick else ""),
            "quick": self.quick,
            "when": self._when,
            "wall_s": round(time.monotonic() - self._started, 1),
            "machine": machine(),
            "versions": versions(),
            "load_average": {"before": self._load_before, "after": load_average()},
            "params": self.params,
            "figures": self.figures,
            "table": [asdict(r) for r in self.rows],
            "notes": self.notes,
            **self.extra,
        }

    def finish(self) -> Path:
        """Print the table and write bench/results/<name>.json; returns its path."""
        data = self.as_dict()
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        # RENAME_ONLY: results are rewritten by the next run; a reader must not see half.
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        atomic_write(path, text.encode(), durability=Durability.RENAME_ONLY)
        print(render_table(self.name, self.rows, self.quick, data["load_average"]))
        for n in self.notes:
            print(f"  note: {n}")
        print(f"  wrote {path.relative_to(REPO)} ({data['wall_s']} s)")
        sys.stdout.flush()
        return path


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def render_table(name: str, rows: list[Row], quick: bool, load: dict[str, list[float]]) -> str:
    """The plain-text table a benchmark prints."""
    head = ("figure", "value", "reference (same run)", "ratio", "target", "met")
    body = []
    for r in rows:
        ref = f"{r.reference}: {fmt(r.ref_value, r.unit)}" if r.reference else ""
        met = "" if r.met is None else ("yes" if r.met else "NO")
        body.append(
            (
                r.figure,
                fmt(r.value, r.unit),
                ref,
                fmt(r.ratio) if r.ratio else "",
                r.target or "",
                met,
            )
        )
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = [
        f"== bench.{name}{' (quick)' if quick else ''} — load average before "
        f"{load['before']}, after {load['after']}",
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
        line,
    ]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(out)
