"""Scale-out: collectors that split the sites (`mqtt.sites`), against one collector for all.

    .venv/bin/python -m bench.scaleout [--quick]

Two sites on one broker and one InfluxDB, each with its own units publishing pre-signed,
hash-chained streams (as bench.ingest, the per-unit budget lifted). Phase 1: one collector
subscribed to both sites takes both streams. Phase 2 (fresh units, so every chain starts at
seq 1 before the collector that keeps it): two collectors, each with `mqtt.sites` naming one
site, take them. Both phases run the same time with the same lead per site.

Each collector sees its sites' whole chains, so none may record a gap (a shared subscription
deals a unit's events to every member in turn, and each member records the others' events as
gaps). The figure is events per collector CPU-second: on a 2-core machine the throughput
cannot double, but the split must cost nothing per event (target: two collectors >= 0.9x of
one). The collectors' CPU includes their signature workers.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.collectorlog import StoredLog
from bench.cpu import machine_cpu_s, tree_cpu_s
from bench.ingest import NO_BUDGET, devices, stored_in_influx
from bench.load import Drive, drive
from bench.provision import enrol_units
from bench.report import Report, Row, parse_args, workdir
from bench.site import BenchSite, Identity
from bench.streams import StreamSpec, make_streams
from devstack.stack import jaga

TARGET_CPU_RATIO = 0.9
WARMUP_S = 2.0
SITES = ("scale-a", "scale-b")


@dataclass(frozen=True)
class Sizes:
    units_per_site: int
    seconds: float
    cap_per_s: int
    """Events made ahead per phase: seconds x cap_per_s (the most a phase can use)."""
    lead: int
    """Per site: at most this many events published and not yet stored."""


FULL = Sizes(units_per_site=4, seconds=20, cap_per_s=12_000, lead=4_000)
QUICK = Sizes(units_per_site=4, seconds=8, cap_per_s=12_000, lead=4_000)


class SiteUnits:
    """What bench.load's publishers need of a site: its name, the broker, its units' files."""

    def __init__(self, bench: BenchSite, site: str) -> None:
        self.bench = bench
        self.site = site

    @property
    def port(self) -> int:
        return self.bench.port

    def unit(self, device: str) -> Identity:
        folder = self.bench.registry / "devices" / self.site / device
        return Identity(
            device,
            self.bench.registry / "ca" / "ca.crt",
            folder / "device.crt",
            folder / "device.key",
        )


def units_of(site: str, phase: int, n: int) -> list[str]:
    return devices(n, f"{site[-1]}{phase}")


def prepare(root: Path, sizes: Sizes) -> tuple[BenchSite, dict[tuple[int, str], list[list[bytes]]]]:
    """Both sites and every phase's units in one registry; the servers; the streams."""
    bench = BenchSite(root, site=SITES[0])
    first = [d for phase in (1, 2) for d in units_of(SITES[0], phase, sizes.units_per_site)]
    print(f"  provisioning 2 sites, {4 * sizes.units_per_site} units", flush=True)
    bench.stack.provision_registry()
    enrol_units(bench.registry, SITES[0], first)
    jaga("jaga-provision", "--dir", bench.registry, "site", "add", SITES[1], "--name", "Scale B",
         "--timezone", "Asia/Jakarta", "--broker-host", "127.0.0.1",
         "--broker-port", str(bench.port))  # fmt: skip
    second = [d for phase in (1, 2) for d in units_of(SITES[1], phase, sizes.units_per_site)]
    enrol_units(bench.registry, SITES[1], second)
    bench.stack.configure_broker()  # the ACL from the registry: both sites' units
    bench.start_servers()
    per_unit = int(sizes.seconds * sizes.cap_per_s / (2 * sizes.units_per_site))
    ts0 = time.time_ns() - 3600 * 10**9
    keys: list[tuple[int, str]] = [(p, s) for p in (1, 2) for s in SITES]
    specs = [
        StreamSpec(s, d, SiteUnits(bench, s).unit(d).key, per_unit, ts0_ns=ts0)
        for p, s in keys
        for d in units_of(s, p, sizes.units_per_site)
    ]
    made = make_streams(specs)
    n = sizes.units_per_site
    return bench, {key: made[i * n : (i + 1) * n] for i, key in enumerate(keys)}


def phase(
    bench: BenchSite,
    streams: dict[str, list[list[bytes]]],
    takes: dict[str, str],
    number: int,
    sizes: Sizes,
) -> dict[str, Any]:
    """Feed each site's streams while the collectors named in `takes` (site -> collector) store
    them; their stored rate, and the CPU they used per event."""
    procs = {name: bench.collectors[name] for name in set(takes.values())}
    pids = {name: p.pid for name, p in procs.items()}
    runs: dict[str, Drive] = {}

    def feed(site: str) -> None:
        log = StoredLog(procs[takes[site]].log_path, site=site)
        runs[site] = drive(
            SiteUnits(bench, site),  # type: ignore[arg-type]
            streams[site],
            units_of(site, number, sizes.units_per_site),
            log.poll_count,
            seconds=sizes.seconds,
            lead=sizes.lead,
            tag=f"p{number}",
        )

    cpu0 = {name: tree_cpu_s(pid) or 0.0 for name, pid in pids.items()}
    busy0, total0 = machine_cpu_s()
    t0 = time.monotonic()
    threads = [threading.Thread(target=feed, args=(s,)) for s in SITES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    cpu = {name: (tree_cpu_s(pid) or 0.0) - cpu0[name] for name, pid in pids.items()}
    busy1, total1 = machine_cpu_s()
    published = sum(r.published for r in runs.values())
    drained = all(r.drained_s is not None for r in runs.values())
    rates = [r.rate(WARMUP_S)[0] for r in runs.values()]
    rate = sum(x for x in rates if x) if all(rates) else None
    cpu_s = sum(cpu.values())
    return {
        "takes": takes,
        "published": published,
        "all_stored": drained,
        "events_per_s": round(rate) if rate else None,
        "per_site_events_per_s": {s: round(r.rate(WARMUP_S)[0] or 0) for s, r in runs.items()},
        "collector_cpu_s": {n: round(v, 2) for n, v in cpu.items()},
        "collector_cores": round(cpu_s / wall, 2),
        "events_per_cpu_s": round(published / cpu_s) if cpu_s > 0 and drained else None,
        "wall_s": round(wall, 1),
        "machine_busy_cores": round((busy1 - busy0) / wall, 2),
        "machine_cores": round((total1 - total0) / wall, 2),
        "other_cores": round((busy1 - busy0 - cpu_s) / wall, 2),
        "publisher_errors": [e for r in runs.values() for e in r.publisher_errors],
    }


def main() -> int:
    args = parse_args(__doc__ or "")
    sizes = QUICK if args.quick else FULL
    root = workdir("scaleout")
    overrides = {
        "one": {**NO_BUDGET, "mqtt": {"sites": list(SITES)}},
        "a": {**NO_BUDGET, "mqtt": {"sites": [SITES[0]]}},
        "b": {**NO_BUDGET, "mqtt": {"sites": [SITES[1]]}},
    }
    report = Report("scaleout", args.quick, {**sizes.__dict__, "collectors": overrides})
    bench, streams = prepare(root, sizes)
    try:
        print("  phase 1: one collector takes both sites", flush=True)
        bench.start_collector("one", overrides["one"])
        one = phase(
            bench, {s: streams[(1, s)] for s in SITES}, dict.fromkeys(SITES, "one"), 1, sizes
        )
        bench.collectors["one"].stop()
        print(
            f"    {one['events_per_s']} events/s, {one['events_per_cpu_s']} per CPU-s", flush=True
        )
        print("  phase 2: two collectors, one site each (mqtt.sites)", flush=True)
        bench.start_collector("a", overrides["a"])
        bench.start_collector("b", overrides["b"])
        two = phase(
            bench, {s: streams[(2, s)] for s in SITES}, {SITES[0]: "a", SITES[1]: "b"}, 2, sizes
        )
        print(
            f"    {two['events_per_s']} events/s, {two['events_per_cpu_s']} per CPU-s", flush=True
        )
        influx = stored_in_influx_all(bench)
        stored_by = {
            n: p.log_tail(10**7).count(" jaga.collector: stored ")
            for n, p in bench.collectors.items()
        }
    finally:
        bench.stop()
    published = one["published"] + two["published"]
    lost = published - influx["events"]
    e1, e2 = one["events_per_cpu_s"], two["events_per_cpu_s"]
    cpu_ratio = None if not e1 or not e2 else round(e2 / e1, 2)
    r1, r2 = one["events_per_s"], two["events_per_s"]
    ratio = None if not r1 or not r2 else round(r2 / r1, 2)
    gaps = influx["gaps_opened"]
    report.figure("one_events_per_cpu_s", e1)
    report.figure("two_events_per_cpu_s", e2)
    report.figure("cpu_ratio", cpu_ratio)
    report.figure("one_collector_events_per_s", r1)
    report.figure("events_per_s", r2)
    report.figure("ratio", ratio)
    report.figure("gaps_opened", gaps)
    report.figure("lost", lost)
    report.figure("integrity_or_deadletters", influx["integrity"] + influx["deadletters"])
    report.figure("stored_by_collector", stored_by)
    report.row(
        Row(
            "2 collectors (mqtt.sites), events per collector CPU-s",
            e2,
            "ev/s",
            "1 collector",
            e1,
            f">= {TARGET_CPU_RATIO}x",
            None if cpu_ratio is None else cpu_ratio >= TARGET_CPU_RATIO,
        )
    )
    report.row(Row("2 collectors, events/s", r2, "ev/s", "1 collector", r1, key=True))
    report.row(
        Row(
            "2 collectors, cores they got",
            two["collector_cores"],
            "cores",
            "1 collector",
            one["collector_cores"],
            key=True,
        )
    )
    report.row(
        Row(
            "cores other processes took meanwhile",
            two["other_cores"],
            "cores",
            "1 collector",
            one["other_cores"],
            key=True,
        )
    )
    report.row(Row("gaps recorded (false)", float(gaps), "", target="0", met=gaps == 0))
    report.row(Row("events lost", float(lost), "", target="0", met=lost == 0))
    report.extra["one"] = one
    report.extra["two"] = two
    report.extra["influx"] = influx
    report.note(
        "two collectors + Mosquitto + InfluxDB + the publishers share this machine's "
        f"{os.cpu_count() or 1} cores: the events/s ratio is bounded by CPU here; events per "
        "collector CPU-second says what the split costs"
    )
    report.finish()
    return 0


def stored_in_influx_all(bench: BenchSite) -> dict[str, int]:
    """Events stored in both sites, and what was refused or found missing anywhere."""
    out = stored_in_influx(bench)  # the first site's events; refusals and gaps of all
    other = bench.query(f'SELECT count("seq") FROM "event" WHERE "site" = \'{SITES[1]}\'')
    out["events"] += int(sum(int(v) for r in other for k, v in r.items() if k.startswith("count")))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
