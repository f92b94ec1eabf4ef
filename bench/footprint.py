"""Agent footprint: memory and CPU of one `jaga-agent simulate` process with 4 sensors, the
simulated camera at 2 fps and a heartbeat every 10 s — idle, and busy — beside the RSS of
`python -c pass`.

    .venv/bin/python -m bench.footprint [--quick]

Two units run side by side against a real broker and collector (so publishing is real): one
idle (nothing happens at its pins), one busy (every 10 s: the door opens and shuts, someone
walks past the PIR, the patrol button is pressed — each door opening also makes the camera's
evidence set). After a warm-up, RSS is sampled every second and CPU is the process's user +
system time over the window, as % of one core.

Hook for the camera: `camera_table()` says what is added to agent.toml; until the agent has a
camera config the units run without one, and the result says so.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from bench.cpu import process_cpu_s, rss_mb
from bench.report import Report, Row, parse_args, workdir
from bench.site import BenchSite
from devstack.stack import UnitSpec

WIRING = ("--door", "17:pintu", "--pir", "27:lorong", "--tamper", "22", "--button", "5:patroli")
RSS_TARGET_MB = 80.0
IDLE_CPU_TARGET_PCT = 2.0
WARMUP_S = 5.0
BUSY = """# every 10 s: door open 5 s, a walk past the PIR, a patrol check-in
loop_s = 10

[[step]]
at = 0.0
sensor = "pintu"
action = "open"

[[step]]
at = 2.0
sensor = "lorong"
action = "motion"

[[step]]
at = 5.0
sensor = "pintu"
action = "close"

[[step]]
at = 7.0
sensor = "patroli"
action = "press"
"""


@dataclass(frozen=True)
class Sizes:
    window_s: float


FULL = Sizes(window_s=60.0)
QUICK = Sizes(window_s=15.0)


def camera_table() -> dict[str, Any] | None:
    """The [camera] of agent.toml for a simulated camera at 2 fps; None if the agent has none."""
    from agent.config import AgentConfig

    if "camera" not in AgentConfig.model_fields:
        return None
    return {"kind": "simulated", "fps": 2.0}


def add_camera(agent_toml: Path) -> bool:
    """Give the unit the simulated camera; False when the agent has no camera yet."""
    table = camera_table()
    if table is None:
        return False
    config = tomllib.loads(agent_toml.read_text())
    config["camera"] = table
    agent_toml.write_text(tomli_w.dumps(config))
    from agent.config import load_config

    load_config(agent_toml)  # a hook that no longer fits the config fails loudly here
    return True


def python_pass_rss_mb() -> float:
    """Peak RSS of `python -c pass` with this interpreter."""
    probe = (
        "import resource, subprocess, sys; subprocess.run([sys.executable, '-c', 'pass']); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def main() -> int:
    args = parse_args(__doc__ or "")
    sizes = QUICK if args.quick else FULL
    root = workdir("footprint")
    report = Report("footprint", args.quick, {**sizes.__dict__, "busy_scenario": BUSY})
    idle = root / "idle.toml"
    idle.write_text("loop_s = 0\n")
    busy = root / "busy.toml"
    busy.write_text(BUSY)
    units = (UnitSpec("foot-idle", WIRING, idle), UnitSpec("foot-busy", WIRING, busy))
    site = BenchSite(root, site="footprint", agent_units=units, heartbeat_s=10)
    samples: dict[str, list[float]] = {u.device: [] for u in units}
    result: dict[str, dict[str, float | None]] = {}
    camera = False
    try:
        site.provision()
        camera = all([add_camera(site.stack.unit_dir(u.device) / "agent.toml") for u in units])
        site.start_servers()
        site.start_collector("1")
        procs = {u.device: site.stack.start_agent(u) for u in units}
        time.sleep(WARMUP_S)
        cpu0 = {d: process_cpu_s(p.pid) for d, p in procs.items()}
        t0 = time.monotonic()
        while time.monotonic() - t0 < sizes.window_s:
            for d, p in procs.items():
                rss = rss_mb(p.pid)
                if rss is not None:
                    samples[d].append(rss[0])
            time.sleep(1.0)
        wall = time.monotonic() - t0
        for d, p in procs.items():
            before, after = cpu0[d], process_cpu_s(p.pid)
            peak = rss_mb(p.pid)
            result[d] = {
                "cpu_pct": None
                if before is None or after is None
                else 100 * (after - before) / wall,
                "rss_median_mb": statistics.median(samples[d]) if samples[d] else None,
                "rss_peak_mb": peak[1] if peak else None,
            }
        stored = site.query('SELECT count("seq") FROM "event" WHERE "device" = \'foot-busy\'')
    finally:
        site.stop()
    base = python_pass_rss_mb()
    i, b = result["foot-idle"], result["foot-busy"]
    report.figure("idle", i)
    report.figure("busy", b)
    report.figure("python_pass_rss_mb", round(base, 1))
    report.figure("camera", "simulated, 2 fps" if camera else None)
    report.figure("busy_events_stored", int(sum(int(r.get("count", 0)) for r in stored)))
    for name, r in (("idle", i), ("busy", b)):
        rss_peak = r["rss_peak_mb"]
        report.row(
            Row(
                f"{name}: RSS peak",
                rss_peak,
                "MB",
                "python -c pass",
                base,
                f"< {RSS_TARGET_MB:.0f} MB",
                None if rss_peak is None else rss_peak < RSS_TARGET_MB,
            )
        )
    cpu = i["cpu_pct"]
    report.row(
        Row(
            "idle: CPU",
            cpu,
            "%",
            target=f"< {IDLE_CPU_TARGET_PCT:g} % of a core",
            met=None if cpu is None else cpu < IDLE_CPU_TARGET_PCT,
            key=True,
        )
    )
    report.row(Row("busy: CPU", b["cpu_pct"], "%"))
    if not camera:
        report.note(
            "camera: the agent has no camera config yet; measured without (see camera_table)"
        )
    report.note("busy: a door opening, a PIR walk-past and a patrol press every 10 s")
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
