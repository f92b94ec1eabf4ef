"""`make bench`: every benchmark in turn, one process each, then one summary table.

    .venv/bin/python -m bench.all [--quick] [--only NAME ...] [--no-readme]

Writes bench/results/summary.md and summary.json, and puts the table in README.md between
the `bench:begin` and `bench:end` markers of the Performance section (nothing else there).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.report import REPO, RESULTS, fmt, load_average, machine, versions

BENCHMARKS = (
    "latency",
    "ingest",
    "scaleout",
    "stages",
    "fleet",
    "offline",
    "mobile",
    "drain",
    "footprint",
    "custody",
    "live",
    "lifecycle",
    "ha_republish",
)
README = REPO / "README.md"
BEGIN = "<!-- bench:begin"
END = "<!-- bench:end -->"


def run(name: str, quick: bool) -> tuple[int, float]:
    cmd = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if quick else [])]
    print(f"\n### bench.{name}", flush=True)
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, check=False)
    return done.returncode, time.monotonic() - started


def table(results: dict[str, dict[str, Any]], targeted_only: bool) -> list[str]:
    """Markdown rows: benchmark, figure, value, reference, target, met."""
    lines = [
        "| benchmark | figure | value | reference (same run) | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, data in results.items():
        for row in data.get("table", []):
            if targeted_only and not (row.get("target") or row.get("key")):
                continue
            ref = (
                f"{row['reference']}: {fmt(row['ref_value'], row['unit'])}"
                if row.get("reference")
                else ""
            )
            met = "" if row.get("met") is None else ("yes" if row["met"] else "**no**")
            value = fmt(row["value"], row["unit"])
            target = row.get("target") or ""
            lines.append(f"| {name} | {row['figure']} | {value} | {ref} | {target} | {met} |")
    return lines


def summary_md(results: dict[str, dict[str, Any]], walls: dict[str, float], quick: bool) -> str:
    m = machine()
    v = versions()
    total = sum(walls.values())
    if any(d.get("quick") for d in results.values()):
        quick = True
    loads = {n: d.get("load_average", {}).get("before") for n, d in results.items()}
    when = min((str(d["when"]) for d in results.values() if d.get("when")), default="?")
    head = [
        f"`make bench`{' (quick sizes)' if quick else ''}, started {when.replace('T', ' ')}, "
        f"{total / 60:.1f} min in all — {m['cpu_model']}, {m['cores']} cores, "
        f"{m['memory_mb']:,} MB; Python {v['python']}, Mosquitto {v['mosquitto']}, "
        f"InfluxDB {v['influxd']}, paho-mqtt {v['paho-mqtt']}, cryptography {v['cryptography']}, "
        f"jaga {v['jaga']} at {v['commit']}.",
        "",
        "Load average (1 min) when each started: "
        + ", ".join(f"{n} {la[0] if la else '?'}" for n, la in loads.items())
        + ". Shared machine: read medians and ratios, not absolute numbers.",
        "",
        "Each started at (UTC; a benchmark re-run on its own replaces its rows through "
        "`python -m bench.all --summary-only`): "
        + ", ".join(f"{n} {_at(d)}" for n, d in results.items())
        + ".",
        "",
    ]
    return "\n".join(head + table(results, targeted_only=True)) + "\n"


def _at(data: dict[str, Any]) -> str:
    try:
        return dt.datetime.fromisoformat(str(data.get("when"))).strftime("%m-%d %H:%M")
    except ValueError:
        return "?"


def update_readme(block: str) -> bool:
    """Replace what is between the markers; False when the README has no such section."""
    text = README.read_text()
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        return False
    start = text.index("\n", start) + 1
    README.write_text(text[:start] + block + text[end:])
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1"
    )
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="run nothing: rebuild the summary (and README table) from bench/results/*.json",
    )
    args = parser.parse_args()
    started = time.monotonic()
    load0 = load_average()
    walls: dict[str, float] = {}
    codes: dict[str, int] = {}
    for name in args.only:
        if args.summary_only:
            codes[name], walls[name] = 0, 0.0
        else:
            codes[name], walls[name] = run(name, args.quick)
    results: dict[str, dict[str, Any]] = {}
    for name in args.only:
        path = RESULTS / f"{name}.json"
        if codes[name] == 0 and path.exists():
            results[name] = json.loads(path.read_text())
            if args.summary_only:
                walls[name] = float(results[name].get("wall_s", 0.0))
    md = summary_md(results, walls, args.quick)
    (RESULTS / "summary.md").write_text(md)
    (RESULTS / "summary.json").write_text(
        json.dumps(
            {
                "quick": args.quick,
                "wall_s": {n: round(w, 1) for n, w in walls.items()},
                "exit_codes": codes,
                "total_s": round(time.monotonic() - started, 1),
                "load_average_before": load0,
                "figures": {n: d.get("figures", {}) for n, d in results.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print("\n" + md)
    if not args.no_readme and set(args.only) == set(BENCHMARKS):
        print("README.md updated" if update_readme(md) else "README.md: no bench markers found")
    for name, wall in walls.items():
        print(f"  bench.{name:<10} {wall:6.1f} s  {'ok' if codes[name] == 0 else 'FAILED'}")
    total = time.monotonic() - started
    print(f"  total {total:.0f} s ({total / 60:.1f} min)")
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
