"""Collector ingest: verified, deduplicated events per second written to InfluxDB, sustained,
none lost — beside the rate `mosquitto_sub` receives the same stream at (the broker's limit).

    .venv/bin/python -m bench.ingest [--quick]
    .venv/bin/python -m bench.ingest --against <commit> [--quick]   (A/B: ingest_ab.json)

Several units (each with its own certificate and signing key from the registry) publish
pre-signed, hash-chained event streams as fast as the consumer takes them (at most `lead`
ahead). Phase 1: `mosquitto_sub` as the operator takes the stream (no collector session exists
yet, so the broker queues nothing for one). Phase 2: one `jaga-collector run` takes it, while
py-spy samples the collector. The per-unit budget (50/s per unit by default: a fairness limit
for a flooding unit) is lifted so the pipeline itself is measured.

With --against, the collector of another commit (its tree from `git archive`) and this tree's
take turns on the same servers, round after round (each round on units of its own, so both
start from empty chains), so that both meet the same load of this shared machine: the figure
is each one's median rate and events per CPU-second, and their ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import profile
from bench.collectorlog import StoredLog
from bench.cpu import CpuMeter, process_cpu_s
from bench.load import Drive, SubCounter, drive
from bench.report import Report, Row, parse_args, workdir
from bench.site import BenchSite
from bench.stats import percentile
from bench.streams import StreamSpec, make_streams
from devstack.stack import CollectorProcess

TARGET_PER_PROCESS = 10_000
NO_BUDGET = {"unit_rate_per_s": 1e9, "unit_burst": 1e9}
WARMUP_S = 2.0


@dataclass(frozen=True)
class Sizes:
    units: int
    seconds: float
    cap_per_s: int
    """Events made ahead: seconds x cap_per_s (the most a run can use)."""
    reference_events: int
    lead: int


FULL = Sizes(units=8, seconds=60, cap_per_s=10_000, reference_events=120_000, lead=8_000)
QUICK = Sizes(units=8, seconds=10, cap_per_s=10_000, reference_events=60_000, lead=8_000)


def devices(n: int, prefix: str = "ing") -> list[str]:
    return [f"{prefix}-{i:02d}" for i in range(1, n + 1)]


def prepare(
    root: Path, site_id: str, units: int, streams_of: int, names: Sequence[str] = ()
) -> tuple[BenchSite, list[list[bytes]]]:
    """Provision the units, start Mosquitto and InfluxDB, make `streams_of` events per unit
    (`names`: the units, else `devices(units)`)."""
    site = BenchSite(root, site=site_id)
    names = list(names) or devices(units)
    print(f"  provisioning {len(names)} units", flush=True)
    site.provision(bulk_units=names)
    site.start_servers()
    specs = [
        StreamSpec(site_id, d, site.unit(d).key, streams_of, ts0_ns=time.time_ns() - 3600 * 10**9)
        for d in names
    ]
    return site, make_streams(specs)


def reference(site: BenchSite, streams: Sequence[Sequence[bytes]], sizes: Sizes) -> dict[str, Any]:
    """mosquitto_sub's receive rate of (the first part of) the same streams."""
    per_unit = sizes.reference_events // len(streams)
    part = [s[:per_unit] for s in streams]
    total = sum(len(s) for s in part)
    sub = SubCounter(site, total)
    time.sleep(0.5)
    try:
        run = drive(
            site,
            part,
            devices(len(streams)),
            lambda: sub.count,
            seconds=120,
            lead=sizes.lead,
            tag="ref",
        )
    finally:
        sub.stop()
    rate = None
    if sub.first_ns and sub.last_ns and sub.last_ns > sub.first_ns:
        rate = (sub.count - 1) / ((sub.last_ns - sub.first_ns) / 1e9)
    return {
        "messages": total,
        "received": sub.count,
        "msgs_per_s": round(rate) if rate else None,
        "publisher_errors": run.publisher_errors,
    }


def measure(
    site: BenchSite,
    streams: Sequence[Sequence[bytes]],
    collectors: Sequence[str],
    *,
    seconds: float,
    lead: int,
    profile_to: Path | None = None,
    names: Sequence[str] = (),
) -> dict[str, Any]:
    """Drive the streams into the running collectors; their stored rate and what is lost.
    `names`: the streams' units, else `devices(len(streams))`."""
    logs = [StoredLog(site.collectors[c].log_path) for c in collectors]
    spy = None
    if profile_to is not None and profile.available():
        pid = site.collectors[collectors[0]].pid
        spy = profile.start(pid, seconds - WARMUP_S - 1, profile_to)
    pids = server_pids(site)
    # A collector's CPU includes its signature pool's worker processes.
    meter = CpuMeter(pids, frozenset(n for n in pids if n.startswith("collector-"))).start()
    mains = [site.collectors[c].pid for c in collectors]
    main0, t0 = sum(process_cpu_s(p) or 0.0 for p in mains), time.monotonic()
    run = drive(
        site,
        streams,
        list(names) or devices(len(streams)),
        lambda: sum(log.poll_count() for log in logs),
        seconds=seconds,
        lead=lead,
        tag="load",
    )
    cpu = meter.stop()
    main_cores = (sum(process_cpu_s(p) or 0.0 for p in mains) - main0) / (time.monotonic() - t0)
    if spy is not None:
        spy.wait(30)
    rate, window = run.rate(WARMUP_S)
    spans = run.rates(WARMUP_S)
    feeders = round(run.feeders_cpu_s / max(1e-9, cpu.window_s), 2)
    used = cpu.of("collector-")
    return {
        "published": run.published,
        "stored_by_log": sum(log.count for log in logs),
        "by_collector": {c: log.count for c, log in zip(collectors, logs, strict=True)},
        "events_per_s": round(rate) if rate else None,
        "window_s": round(window, 1),
        "rate_5s_median": None if not spans else round(percentile(spans, 50) or 0),
        "rate_5s_min": None if not spans else round(min(spans)),
        "collector_cores": round(used, 2),
        "main_process_cores": round(main_cores, 2),
        "main_process_us_per_event": round(main_cores / rate * 1e6, 1) if rate else None,
        "events_per_cpu_s": round(rate / used) if rate and used else None,
        "catch_up_s": None if run.drained_s is None else round(run.drained_s, 2),
        "publisher_errors": run.publisher_errors,
        "fed_per_unit": run.fed,
        "cpu": {**asdict(cpu), "feeders_cores": feeders},
        "other_load_cores": round(cpu.rest_cores - feeders, 2),
        "_drive": run,
    }


def server_pids(site: BenchSite) -> dict[str, int]:
    """The processes whose CPU a run reports: collectors, broker, InfluxDB, this bench."""
    pids = {f"collector-{n}": p.pid for n, p in site.collectors.items() if p.running}
    if site.stack.mosquitto is not None:
        pids["mosquitto"] = site.stack.mosquitto.pid
    if site.stack.influx is not None:
        pids["influxd"] = site.stack.influx.pid
    pids["bench (feeder, forwarder)"] = os.getpid()
    return pids


def stored_in_influx(site: BenchSite) -> dict[str, int]:
    """Events stored per unit, and what the collector refused or found missing."""

    def count(q: str) -> int:
        rows = site.query(q)
        return int(sum(int(v) for r in rows for k, v in r.items() if k.startswith("count")))

    return {
        "events": count(f'SELECT count("seq") FROM "event" WHERE "site" = \'{site.site}\''),
        "deadletters": count('SELECT count("topic") FROM "deadletter"'),
        "integrity": count('SELECT count("detail") FROM "integrity"'),
        "gaps_opened": count('SELECT count("first") FROM "gap" WHERE "change" = \'opened\''),
    }


class TreeCollector(CollectorProcess):
    """`jaga-collector run` from another source tree (e.g. an earlier commit's), with this
    venv's libraries: the editable install's finder is taken out so the tree's packages load."""

    def __init__(self, config: Path, log_path: Path, tree: Path) -> None:
        super().__init__(config, log_path)
        self.tree = tree

    def command(self) -> list[str]:
        launch = (
            "import sys; "
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
            f"sys.path.insert(0, {str(self.tree)!r}); "
            f"sys.argv = ['jaga-collector', 'run', '--config', {str(self.config)!r}]; "
            "from broker.entry import main; sys.exit(main())"
        )
        return [sys.executable, "-c", launch]


@dataclass(frozen=True)
class AbSizes:
    rounds: int
    seconds: float
    cap_per_s: int
    units: int
    lead: int


AB_FULL = AbSizes(rounds=3, seconds=15, cap_per_s=11_000, units=8, lead=8_000)
AB_QUICK = AbSizes(rounds=1, seconds=8, cap_per_s=12_000, units=8, lead=8_000)
AB_SIDES = ("against", "this")


def source_tree(commit: str, where: Path) -> tuple[Path, str]:
    """`git archive` of commit, unpacked under where; and its short hash."""
    repo = Path(__file__).resolve().parents[1]
    short = subprocess.run(
        ["git", "rev-parse", "--short", commit],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    where.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit], cwd=repo, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where, short


def ab(commit: str, quick: bool) -> int:
    """This tree's collector against commit's, in turns; writes bench/results/ingest_ab.json."""
    sizes = AB_QUICK if quick else AB_FULL
    root = workdir("ingest-ab")
    tree, short = source_tree(commit, root / "against-tree")
    report = Report("ingest_ab", quick, {**sizes.__dict__, "against": short})
    per_unit = int(sizes.seconds * sizes.cap_per_s // sizes.units)
    groups = {
        (k, side): devices(sizes.units, f"ab{k}{side[0]}")
        for k in range(sizes.rounds)
        for side in AB_SIDES
    }
    every = [d for names in groups.values() for d in names]
    site, streams = prepare(root, "ingestab", len(every), per_unit, every)
    of_unit = dict(zip(every, streams, strict=True))
    runs: list[dict[str, Any]] = []
    try:
        for k in range(sizes.rounds):
            order = AB_SIDES if k % 2 == 0 else AB_SIDES[::-1]  # who goes first alternates
            for side in order:
                name = f"{side}-{k}"
                config = site.collector_config(name, NO_BUDGET)
                log_path = config.parent / "collector.log"
                proc = (
                    TreeCollector(config, log_path, tree)
                    if side == "against"
                    else CollectorProcess(config, log_path)
                )
                proc.name = f"collector-{name}"
                site.collectors[name] = proc
                proc.start(timeout=60)
                names = groups[(k, side)]
                load = os.getloadavg()
                print(f"  round {k + 1}, {side} ({short if side == 'against' else 'this tree'})")
                got = measure(
                    site,
                    [of_unit[d] for d in names],
                    [name],
                    seconds=sizes.seconds,
                    lead=sizes.lead,
                    names=names,
                )
                got.pop("_drive")
                proc.stop()
                print(f"    {got['events_per_s']} events/s, {got['events_per_cpu_s']} per CPU-s")
                runs.append(
                    {
                        "round": k,
                        "side": side,
                        "load_average": [round(x, 2) for x in load],
                        **{key: got[key] for key in _AB_KEYS},
                    }
                )
        influx = stored_in_influx(site)
    finally:
        site.stop()
    published = sum(r["published"] for r in runs)
    lost = published - influx["events"]

    def median(side: str, key: str) -> float | None:
        values = [r[key] for r in runs if r["side"] == side and r[key] is not None]
        return round(statistics.median(values)) if values else None

    for key, what in (("events_per_s", "events/s"), ("events_per_cpu_s", "events per CPU-s")):
        old, new = median("against", key), median("this", key)
        report.figure(f"{key}_this", new)
        report.figure(f"{key}_against", old)
        report.row(Row(f"collector {what}, this tree (median)", new, "ev/s", short, old, key=True))
    key = "main_process_us_per_event"
    values = {side: [r[key] for r in runs if r["side"] == side and r[key]] for side in AB_SIDES}
    main_us = {side: round(statistics.median(v), 1) if v else None for side, v in values.items()}
    report.figure(f"{key}_this", main_us["this"])
    report.figure(f"{key}_against", main_us["against"])
    report.row(
        Row(
            "CPU per event on the collector's own process, this tree (median)",
            main_us["this"],
            "µs",
            short,
            main_us["against"],
            key=True,
        )
    )
    report.figure("lost", lost)
    report.row(Row("events lost", float(lost), "", target="0", met=lost == 0))
    report.extra["runs"] = runs
    report.extra["influx"] = influx
    report.note(
        f"this tree and {short} took turns on the same servers ({sizes.rounds} round(s) of "
        f"{sizes.seconds:g} s each, the first to go alternating): both met the same load"
    )
    report.finish()
    return 0


_AB_KEYS = (
    "published",
    "events_per_s",
    "events_per_cpu_s",
    "collector_cores",
    "main_process_cores",
    "main_process_us_per_event",
    "other_load_cores",
    "rate_5s_median",
    "window_s",
)


def main() -> int:
    args = parse_args(
        __doc__ or "",
        lambda p: p.add_argument(
            "--against", metavar="COMMIT", help="A/B: this tree's collector against COMMIT's"
        ),
    )
    if args.against:
        return ab(args.against, args.quick)
    sizes = QUICK if args.quick else FULL
    root = workdir("ingest")
    report = Report("ingest", args.quick, {**sizes.__dict__, "collector_overrides": NO_BUDGET})
    per_unit = int(sizes.seconds * sizes.cap_per_s // sizes.units)
    site, streams = prepare(root, "ingest", sizes.units, per_unit)
    try:
        print("  phase 1: mosquitto_sub takes the stream (reference)", flush=True)
        ref = reference(site, streams, sizes)
        print(f"    {ref['msgs_per_s']} msg/s", flush=True)
        print("  phase 2: one collector takes the stream, py-spy samples it", flush=True)
        site.start_collector("1", NO_BUDGET)
        folded = root / "collector-profile.folded"
        got = measure(
            site, streams, ["1"], seconds=sizes.seconds, lead=sizes.lead, profile_to=folded
        )
        run: Drive = got.pop("_drive")
        print(f"    {got['events_per_s']} events/s", flush=True)
        influx = stored_in_influx(site)
    finally:
        site.stop()
    lost = got["published"] - influx["events"]
    prof = profile.summarize(folded, profile.COLLECTOR_PARTS) if folded.exists() else {}
    rate = got["events_per_s"]
    report.figure("events_per_s", rate)
    report.figure("reference_msgs_per_s", ref["msgs_per_s"])
    report.figure("published", got["published"])
    report.figure("stored", influx["events"])
    report.figure("lost", lost)
    report.figure("sustained_window_s", got["window_s"])
    report.figure("rate_5s_median", got["rate_5s_median"])
    report.figure("rate_5s_min", got["rate_5s_min"])
    report.figure("collector_cores", got["collector_cores"])
    report.figure("main_process_cores", got["main_process_cores"])
    report.figure("main_process_us_per_event", got["main_process_us_per_event"])
    report.figure("events_per_cpu_s", got["events_per_cpu_s"])
    report.figure("other_load_cores", got["other_load_cores"])
    report.figure("catch_up_after_feed_s", got["catch_up_s"])
    report.figure("integrity_or_deadletters", influx["integrity"] + influx["deadletters"])
    report.figure("gaps_opened", influx["gaps_opened"])
    report.row(
        Row(
            "collector events/s (1 process)",
            rate,
            "ev/s",
            "mosquitto_sub msg/s",
            ref["msgs_per_s"],
            f">= {TARGET_PER_PROCESS:,}",
            None if rate is None else rate >= TARGET_PER_PROCESS,
        )
    )
    report.row(Row("median 5-s rate", got["rate_5s_median"], "ev/s"))
    report.row(
        Row(
            "events per CPU-second of the collector",
            got["events_per_cpu_s"],
            "ev/s",
            key=True,
        )
    )
    report.row(
        Row(
            "CPU per event on the collector's own process (one core at most)",
            got["main_process_us_per_event"],
            "µs",
            key=True,
        )
    )
    report.row(Row("cores the collector got", got["collector_cores"], "cores", key=True))
    report.row(
        Row("cores other processes took meanwhile", got["other_load_cores"], "cores", key=True)
    )
    report.row(Row("events lost", float(lost), "", target="0", met=lost == 0))
    report.row(Row("sustained window", got["window_s"], "s", target=f"{sizes.seconds:g} s"))
    report.extra["reference"] = ref
    report.extra["collector"] = got
    report.extra["influx"] = influx
    report.extra["samples"] = [[round(t, 2), n] for t, n in run.samples]
    report.extra["profile"] = prof
    if got["window_s"] < sizes.seconds - WARMUP_S - 1:
        report.note(
            f"the pre-made stream ran out after {got['window_s']} s: raise cap_per_s to sustain "
            "the full window"
        )
    if prof.get("parts_pct"):
        top = list(prof["parts_pct"].items())[:4]
        report.note("collector profile (share of busy samples): " + json.dumps(dict(top)))
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
