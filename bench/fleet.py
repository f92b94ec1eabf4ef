"""Fleet: how many units one broker and one collector carry, each unit its own MQTT session
with TLS and its own certificate, with no false `unit offline` and stored p99 < 1 s.

    .venv/bin/python -m bench.fleet [--quick]

Units are enrolled through the provisioning API (own key and certificate each) and run by
bench.fleetworker processes, 500 units per process on one selector loop (10,000 units = 20
processes). Each unit, at the agent's defaults: will `offline` and birth `online` (retained),
a heartbeat at connect and every 60 s, keepalive 6 s (a PINGREQ whenever it sent nothing for
6 s: the broker gives up on it, and publishes its will, 9 s after its last packet), and a
signed door event every 30 s on average (Poisson) — a busy site.

The fleet grows in steps (2,000, 10,000); each step is watched for a window longer than
a heartbeat interval (many keepalives). A step holds when, in its window: no unit's will
(`offline`) was published or stored, no `unit-offline` alert was raised, no session was
dropped, no unit went 3 intervals without a stored heartbeat, no event was lost, and
pin-to-stored p99 of the events (event time -> the collector's `stored` line) is under 1 s.
Growth stops at the first step that does not hold. The broker's and the collector's resident
memory is read at each step: the slope between steps is their memory per unit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.alerts import ALERT_FILTER, parse_alert
from bench.collectorlog import StoredLog
from bench.cpu import CpuMeter, _children, rss_mb
from bench.ingest import server_pids
from bench.mqttclients import Session
from bench.report import Report, Row, parse_args, workdir
from bench.site import BenchSite
from bench.stats import summary
from protocol import topics

HEARTBEAT_S = 60
KEEPALIVE_S = 6
EVENT_EVERY_S = 30.0
P99_TARGET_MS = 1000.0
TARGET_UNITS = 10000


@dataclass(frozen=True)
class Sizes:
    steps: tuple[int, ...]
    per_worker: int
    window_s: float


FULL = Sizes(steps=(2000, 10000), per_worker=500, window_s=65.0)
QUICK = Sizes(steps=(100, 200), per_worker=100, window_s=25.0)


class WorkerProc:
    """One bench.fleetworker process and its units."""

    def __init__(self, root: Path, index: int, site: BenchSite, devices: list[str]) -> None:
        self.index = index
        self.events_path = root / f"worker-{index}.events"
        self.summary_path = root / f"worker-{index}.json"
        spec = {
            "port": site.port,
            "ca": str(site.registry / "ca" / "ca.crt"),
            "site": site.site,
            "units": [
                {"device": d, "cert": str(site.unit(d).cert), "key": str(site.unit(d).key)}
                for d in devices
            ],
            "heartbeat_s": HEARTBEAT_S,
            "keepalive_s": KEEPALIVE_S,
            "event_every_s": EVENT_EVERY_S,
            "seed": index,
            "events_out": str(self.events_path),
            "summary_out": str(self.summary_path),
        }
        spec_path = root / f"worker-{index}.spec.json"
        spec_path.write_text(json.dumps(spec))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fleetworker", str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=(root / f"worker-{index}.log").open("wb"),
            text=True,
        )
        self.ready = threading.Event()
        self.connected = 0
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, out: IO[str] | None) -> None:
        assert out is not None
        for line in out:
            if line.startswith("ready"):
                self.connected = int(line.split()[1])
                self.ready.set()

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            result: dict[str, Any] = json.loads(self.summary_path.read_text())
            return result
        except (OSError, ValueError):
            return {"error": f"worker {self.index} left no summary (exit {self.proc.returncode})"}


@dataclass
class Watch:
    """Wills and offline alerts as the operator sees them."""

    offline: list[tuple[int, str]]
    alerts: list[tuple[int, str]]
    lock: threading.Lock
    births: list[tuple[int, str]] = field(default_factory=list)

    def on_arrival(self, now: int, topic: str, payload: bytes) -> None:
        unit = topics.device_topic_of(topic)
        if unit is not None and unit.channel is topics.Channel.STATUS:
            try:
                state = json.loads(payload).get("state")
            except ValueError:
                return
            if state == "offline":
                with self.lock:
                    self.offline.append((now, unit.device))
            elif state == "online":
                with self.lock:
                    self.births.append((now, unit.device))
        elif topics.parse_alert_topic(topic) is not None:
            alert = parse_alert(payload)
            if alert and alert.rule == "unit-offline" and alert.state == "raised":
                with self.lock:
                    self.alerts.append((now, alert.device))


def published_events(workers: list[WorkerProc], t0: int, t1: int) -> list[tuple[str, int, int]]:
    """(device, seq, event ns) of every event the workers published between t0 and t1."""
    out = []
    for w in workers:
        try:
            lines = w.events_path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and t0 <= int(parts[2]) < t1:
                out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def heartbeat_gaps(site: BenchSite, t0: int, t1: int, devices: list[str]) -> dict[str, float]:
    """Longest time each unit went without a stored heartbeat within [t0, t1], in seconds."""
    rows = site.query(
        f'SELECT "uptime_s", "device" FROM "heartbeat" WHERE "site" = \'{site.site}\' '
        f"AND time >= {t0 - HEARTBEAT_S * 10**9 * 3} AND time <= {t1}"
    )
    times: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        times[str(r["device"])].append(int(r["time"]))
    gaps = {}
    for d in devices:
        ts = sorted(times.get(d, []))
        marks = [t for t in ts if t < t0][-1:] + [t for t in ts if t >= t0] + [t1]
        if len(marks) == 1:
            gaps[d] = (t1 - t0) / 1e9 + 3 * HEARTBEAT_S
            continue
        gaps[d] = max((b - a) / 1e9 for a, b in itertools.pairwise(marks))
    return gaps


def offline_stored(site: BenchSite, t0: int, t1: int) -> int:
    rows = site.query(
        f'SELECT count("online") FROM "status" WHERE "site" = \'{site.site}\' '
        f'AND "online" = 0 AND time >= {t0} AND time <= {t1}'
    )
    return int(sum(int(r.get("count", 0)) for r in rows))


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the collector's signature workers)."""
    total = (rss_mb(pid) or (0.0, 0.0))[0]
    for child in _children(pid):
        total += tree_rss_mb(child)
    return total


def memory(site: BenchSite) -> dict[str, float]:
    pids = server_pids(site)
    return {
        name: round(tree_rss_mb(pid), 1)
        for name, pid in pids.items()
        if name.startswith(("collector", "mosquitto", "influxd"))
    }


def run_step(
    site: BenchSite,
    n: int,
    workers: list[WorkerProc],
    devices: list[str],
    watch: Watch,
    log: StoredLog,
    stored: dict[tuple[str, int], int],
    window_s: float,
) -> dict[str, Any]:
    """Watch n connected units for window_s; what held and what did not."""
    meter = CpuMeter(
        {**server_pids(site), **{f"worker-{w.index}": w.proc.pid for w in workers}}
    ).start()
    t0 = time.time_ns()
    end = time.monotonic() + window_s
    while time.monotonic() < end:
        stored.update({(s.device, s.seq): s.at_ns for s in log.poll()})
        time.sleep(0.5)
    t1 = time.time_ns()
    cpu = meter.stop()
    settle = time.monotonic() + 5
    while time.monotonic() < settle:
        stored.update({(s.device, s.seq): s.at_ns for s in log.poll()})
        time.sleep(0.25)
    events = published_events(workers, t0, t1)
    lat = [(stored[(d, q)] - ts) / 1e6 for d, q, ts in events if (d, q) in stored]
    lost = sum(1 for d, q, _ in events if (d, q) not in stored)
    with watch.lock:
        offline_seen = [d for t, d in watch.offline if t0 <= t <= t1]
        alerts = [d for t, d in watch.alerts if t0 <= t <= t1]
    gaps = heartbeat_gaps(site, t0, t1, devices[:n])
    silent = sorted(d for d, g in gaps.items() if g >= 3 * HEARTBEAT_S)
    s = summary(lat)
    held = (
        not offline_seen
        and not alerts
        and not silent
        and lost == 0
        and s["p99"] is not None
        and s["p99"] < P99_TARGET_MS
    )
    return {
        "units": n,
        "workers": len(workers),
        "held": held,
        "events": len(events),
        "lost": lost,
        "stored_ms": s,
        "offline_wills_seen": len(offline_seen),
        "offline_stored": offline_stored(site, t0, t1),
        "offline_alerts": len(alerts),
        "silent_units": len(silent),
        "silent_examples": silent[:5],
        "heartbeat_gap_max_s": round(max(gaps.values()), 1) if gaps else None,
        "cpu": asdict(cpu),
        "rss_mb": memory(site),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def restart_storm(site: BenchSite, watch: Watch, devices: list[str]) -> dict[str, Any]:
    """Restart the broker under the whole fleet: every unit's will falls and every unit
    reconnects at once (each its own TLS handshake). The collector must page nobody who
    comes back: its resume grace follows the storm. Waits for every unit's birth (at most
    10 min), then for the grace to run out past the last one, and counts the alerts."""
    assert site.stack.mosquitto is not None
    restart_at = time.time_ns()
    site.stack.mosquitto.restart()
    deadline = time.monotonic() + 600
    back: dict[str, int] = {}
    wanted = set(devices)
    while time.monotonic() < deadline and len(back) < len(wanted):
        time.sleep(1.0)
        with watch.lock:
            for t, d in watch.births:
                if t >= restart_at and d in wanted:
                    back.setdefault(d, t)
    last = max(back.values(), default=restart_at)
    # The grace ends resume_grace_s (30 s) after the last birth, a will 3 s later: wait past it.
    settle_until = last + 45 * 10**9
    while time.time_ns() < settle_until:
        time.sleep(1.0)
    with watch.lock:
        alerts = sorted({d for t, d in watch.alerts if t >= restart_at})
    returns = sorted((t - restart_at) / 1e9 for t in back.values())
    return {
        "units": len(wanted),
        "units_back": len(back),
        "all_back_s": round((last - restart_at) / 1e9, 1),
        "back_s": summary(returns),
        # What a grace fixed at 30 s from the restart (and a will's 3 s) would have paged:
        "back_after_33_s": sum(1 for r in returns if r > 33.0),
        "offline_alerts": len(alerts),
        "alert_examples": alerts[:5],
        "load_1min": round(os.getloadavg()[0], 2),
    }


def memory_per_unit(steps: list[dict[str, Any]]) -> dict[str, float]:
    """kB of resident memory each added unit costs a server process: the slope between the
    smallest and the largest step watched."""
    if len(steps) < 2:
        return {}
    a, b = steps[0], steps[-1]
    units = b["units"] - a["units"]
    return {
        name: round((b["rss_mb"][name] - a["rss_mb"].get(name, 0.0)) * 1024 / units, 1)
        for name in b["rss_mb"]
        if name in a["rss_mb"]
    }


def main() -> int:
    def steps_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--steps",
            type=int,
            nargs="+",
            help="fleet sizes to try, e.g. --steps 1000 5000 (default 2000 10000)",
        )
        parser.add_argument(
            "--all-steps",
            action="store_true",
            help="watch every step even after one did not hold (to measure past it)",
        )
        parser.add_argument(
            "--restart",
            action="store_true",
            help="then restart the broker under the largest fleet that held: a reconnection "
            "storm that must page nobody",
        )
        parser.add_argument(
            "--registry",
            type=Path,
            help="a registry an earlier run enrolled (a copy of run/bench/fleet/registry, "
            "u-0001... in site fleet): copied instead of enrolling every unit again",
        )

    args = parse_args(__doc__ or "", steps_option)
    sizes = QUICK if args.quick else FULL
    if args.steps:
        sizes = Sizes(tuple(sorted(args.steps)), sizes.per_worker, sizes.window_s)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker holds N sockets
    root = workdir("fleet")
    params = {
        **sizes.__dict__,
        "heartbeat_s": HEARTBEAT_S,
        "keepalive_s": KEEPALIVE_S,
        "event_every_s": EVENT_EVERY_S,
        "all_steps": args.all_steps,
        "registry_reused": args.registry is not None,
    }
    report = Report("fleet", args.quick, params)
    devices = [f"u-{i:04d}" for i in range(1, max(sizes.steps) + 1)]
    site = BenchSite(root, site="fleet", heartbeat_s=HEARTBEAT_S)
    workers: list[WorkerProc] = []
    steps: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        if args.registry:
            print(f"  units from {args.registry} (enrolled by an earlier run)", flush=True)
            shutil.copytree(args.registry, site.registry)
            site.stack.configure_broker()
        else:
            print(f"  enrolling {len(devices)} units (own key and certificate each)", flush=True)
            site.provision(bulk_units=devices)
        report.figure("provision_s", round(time.monotonic() - started, 1))
        site.start_servers()
        site.start_collector("1")
        watch = Watch([], [], threading.Lock())
        w = Session(
            "bench-fleet-operator",
            site.operator,
            site.port,
            filters=[topics.device_filter(topics.Channel.STATUS, site=site.site), ALERT_FILTER],
            on_arrival=watch.on_arrival,
        ).start()
        log = StoredLog(site.collectors["1"].log_path, from_start=True)
        stored: dict[tuple[str, int], int] = {}
        have = 0
        for n in sizes.steps:
            t = time.monotonic()
            while have < n:
                chunk = devices[have : min(n, have + sizes.per_worker)]
                workers.append(WorkerProc(root, len(workers), site, chunk))
                have += len(chunk)
            for wp in workers:
                if not wp.ready.wait(900):  # TLS handshakes on a loaded machine
                    raise RuntimeError(f"fleet worker {wp.index} did not connect its units")
            connected = sum(wp.connected for wp in workers)
            connect_s = round(time.monotonic() - t, 1)
            print(
                f"  {connected} units connected ({connect_s} s); watching {sizes.window_s:g} s",
                flush=True,
            )
            step = run_step(site, n, workers, devices, watch, log, stored, sizes.window_s)
            step["connected"] = connected
            step["connect_s"] = connect_s
            steps.append(step)
            print(
                f"    held={step['held']} p99={step['stored_ms']['p99']} ms "
                f"wills={step['offline_wills_seen']} silent={step['silent_units']} "
                f"lost={step['lost']}",
                flush=True,
            )
            if (not step["held"] and not args.all_steps) or connected < n:
                break
        if args.restart and steps and steps[-1]["held"]:
            n = steps[-1]["units"]
            print(f"  restarting the broker under {n} units", flush=True)
            storm = restart_storm(site, watch, devices[:n])
            report.extra["restart"] = storm
            print(
                f"    {storm['units_back']} of {n} back in {storm['all_back_s']} s "
                f"({storm['back_after_33_s']} after 33 s), "
                f"unit-offline alerts {storm['offline_alerts']}",
                flush=True,
            )
        w.stop()
    finally:
        summaries = [wp.stop() for wp in workers]
        site.stop()
    largest = max(
        (s["units"] for s in steps if s["held"] and s["connected"] >= s["units"]), default=0
    )
    last = steps[-1] if steps else {}
    report.figure("largest_n_held", largest)
    report.figure("processes", len(workers))
    report.figure("units_per_process", sizes.per_worker)
    report.figure("stored_p50_ms", last.get("stored_ms", {}).get("p50"))
    report.figure("stored_p99_ms", last.get("stored_ms", {}).get("p99"))
    per_unit = memory_per_unit(steps)
    report.figure("memory_kb_per_unit", per_unit)
    report.figure("rss_mb_at_largest", last.get("rss_mb"))
    for s in steps:
        st = s["stored_ms"]
        report.row(
            Row(
                f"N={s['units']}: stored p99",
                st["p99"],
                "ms",
                "p50, same step",
                st["p50"],
                "< 1,000 ms",
                st["p99"] is not None and st["p99"] < P99_TARGET_MS,
            )
        )
        report.row(
            Row(
                f"N={s['units']}: false offline (wills+silent)",
                float(s["offline_wills_seen"] + s["silent_units"] + s["offline_alerts"]),
                "",
                target="0",
                met=s["offline_wills_seen"] + s["silent_units"] + s["offline_alerts"] == 0,
            )
        )
    report.row(
        Row(
            "largest N that holds",
            float(largest),
            "units",
            target=f"{TARGET_UNITS:,}",
            met=largest >= TARGET_UNITS,
        )
    )
    storm = report.extra.get("restart")
    if storm:
        report.figure("restart_units_back_s", storm["all_back_s"])
        report.figure("restart_offline_alerts", storm["offline_alerts"])
        report.figure("restart_back_after_33_s", storm["back_after_33_s"])
        report.row(
            Row(
                f"broker restart under N={storm['units']}: unit-offline alerts "
                f"(every unit back after {storm['all_back_s']} s)",
                float(storm["offline_alerts"]),
                "",
                target="0",
                met=storm["offline_alerts"] == 0 and storm["units_back"] == storm["units"],
            )
        )
    for name, kb in per_unit.items():
        report.row(Row(f"{name}: memory per unit", kb, "kB", key=True))
    if per_unit:
        report.note(
            "memory per unit: the slope of each server's resident memory (with its child "
            f"processes) from {steps[0]['units']:,} to {steps[-1]['units']:,} units"
        )
    for s in steps:
        if not s["held"]:
            cores = s["cpu"]["cores"]
            collector = sum(v for k, v in cores.items() if k.startswith("collector"))
            report.note(
                f"N={s['units']:,} did not hold: stored p99 {s['stored_ms']['p99']} ms, "
                f"wills {s['offline_wills_seen']}, silent {s['silent_units']}, unit-offline "
                f"alerts {s['offline_alerts']}, lost {s['lost']}; the collector got "
                f"{collector:.2f} cores while other processes took {s['cpu']['rest_cores']:.2f} "
                f"of {s['cpu']['machine_cores']:.0f} (load {s['load_1min']})"
            )
    report.extra["steps"] = steps
    report.extra["workers"] = summaries
    report.note(
        f"{len(workers)} worker processes, {sizes.per_worker} units each on one selector loop; "
        "each unit its own TLS session and certificate; the workers, Mosquitto, the collector "
        "and InfluxDB share this machine's cores with whatever else runs (load_1min per step)"
    )
    report.finish()
    del soft
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
