"""Scale-out: two collectors on the shared subscription $share/jaga-collectors against one.

    .venv/bin/python -m bench.scaleout [--quick]

The same units and pre-signed streams as bench.ingest. Phase 1: one collector with
`mqtt.shared = true` takes the first part of every unit's stream; phase 2: a second collector
(own client id, own data dir) joins the group and the two take the rest. Both phases run the
same time with the same lead; the figure is the ratio of their stored rates.

Mosquitto hands each message of a shared subscription to one member in turn, so each
collector sees every other event of a unit and keeps its own chain book: the gaps each one
records for the events the other stored are reported as `gaps_opened`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from bench import profile
from bench.ingest import NO_BUDGET, devices, measure, prepare, stored_in_influx
from bench.report import Report, Row, parse_args, workdir
from bench.site import BenchSite
from bench.streams import StreamSpec, make_streams
from protocol.models import Event
from protocol.signing import event_hash

SHARED = {**NO_BUDGET, "mqtt": {"shared": True}}
TARGET_RATIO = 1.7


@dataclass(frozen=True)
class Sizes:
    units: int
    seconds: float
    cap_per_s: int
    lead: int


FULL = Sizes(units=8, seconds=20, cap_per_s=9_000, lead=8_000)
QUICK = Sizes(units=8, seconds=10, cap_per_s=9_000, lead=8_000)


def continuation(
    site: BenchSite, streams: list[list[bytes]], used: list[int], per_unit: int
) -> list[list[bytes]]:
    """What follows each unit's last sent event, chained to it."""
    specs = []
    for d, stream, n in zip(devices(len(streams)), streams, used, strict=True):
        if n == 0:
            specs.append(
                StreamSpec(site.site, d, site.unit(d).key, per_unit, ts0_ns=time.time_ns())
            )
            continue
        last = Event.model_validate_json(stream[n - 1])
        specs.append(
            StreamSpec(
                site.site,
                d,
                site.unit(d).key,
                per_unit,
                first_seq=last.seq + 1,
                prev=event_hash(last),
                ts0_ns=last.ts + 1000,
            )
        )
    return make_streams(specs)


def main() -> int:
    args = parse_args(__doc__ or "")
    sizes = QUICK if args.quick else FULL
    root = workdir("scaleout")
    report = Report("scaleout", args.quick, {**sizes.__dict__, "collector_overrides": SHARED})
    per_unit = math.ceil(sizes.seconds * sizes.cap_per_s / sizes.units)
    site, streams = prepare(root, "scaleout", sizes.units, per_unit)
    prof = (root / "collector-1-alone.folded", root / "collector-1-shared.folded")
    try:
        print("  phase 1: one collector on the shared subscription", flush=True)
        site.start_collector("1", SHARED)
        one = measure(
            site, streams, ["1"], seconds=sizes.seconds, lead=sizes.lead, profile_to=prof[0]
        )
        one.pop("_drive")
        print(f"    {one['events_per_s']} events/s", flush=True)
        # What each unit sent in phase 1 is a prefix of its stream, fed round-robin.
        used = one["fed_per_unit"]
        want = math.ceil(2.4 * (one["events_per_s"] or 1000) * sizes.seconds / sizes.units)
        more = continuation(site, streams, used, want)
        print("  phase 2: two collectors share the subscription", flush=True)
        site.start_collector("2", SHARED)
        time.sleep(1.0)
        two = measure(
            site, more, ["1", "2"], seconds=sizes.seconds, lead=sizes.lead, profile_to=prof[1]
        )
        two.pop("_drive")
        print(f"    {two['events_per_s']} events/s", flush=True)
        influx = stored_in_influx(site)
    finally:
        site.stop()
    published = one["published"] + two["published"]
    lost = published - influx["events"]
    r1, r2 = one["events_per_s"], two["events_per_s"]
    ratio = None if not r1 or not r2 else round(r2 / r1, 2)
    report.figure("events_per_s", r2)
    report.figure("one_collector_events_per_s", r1)
    report.figure("ratio", ratio)
    report.figure("by_collector", two["by_collector"])
    report.figure("lost", lost)
    report.figure("gaps_opened", influx["gaps_opened"])
    report.figure("integrity_or_deadletters", influx["integrity"] + influx["deadletters"])
    report.row(
        Row(
            "2 collectors, events/s",
            r2,
            "ev/s",
            "1 collector",
            r1,
            f">= {TARGET_RATIO}x",
            None if ratio is None else ratio >= TARGET_RATIO,
        )
    )
    e1, e2 = one["events_per_cpu_s"], two["events_per_cpu_s"]
    report.figure("one_events_per_cpu_s", e1)
    report.figure("two_events_per_cpu_s", e2)
    report.figure("collector_cores", {"one": one["collector_cores"], "two": two["collector_cores"]})
    report.row(
        Row("2 collectors, events per collector CPU-s", e2, "ev/s", "1 collector", e1, key=True)
    )
    report.row(
        Row(
            "2 collectors, cores they got",
            two["collector_cores"],
            "cores",
            "1 collector",
            one["collector_cores"],
        )
    )
    report.row(Row("events lost", float(lost), "", target="0", met=lost == 0))
    report.row(
        Row(
            "gaps recorded (false)",
            float(influx["gaps_opened"]),
            "",
            target="0",
            met=influx["gaps_opened"] == 0,
        )
    )
    report.extra["one"] = one
    report.extra["two"] = two
    report.extra["influx"] = influx
    report.extra["profile_collector_1"] = {
        "alone": profile.summarize(prof[0], profile.COLLECTOR_PARTS) if prof[0].exists() else {},
        "shared": profile.summarize(prof[1], profile.COLLECTOR_PARTS) if prof[1].exists() else {},
    }
    report.note(
        "2 collectors + Mosquitto + InfluxDB share this machine's "
        f"{_cores()} cores: the ratio is bounded by CPU here, not by the design"
    )
    if influx["gaps_opened"]:
        report.note(
            "each collector sees every other event of a unit (shared subscriptions balance per "
            "message) and records the rest as gaps; with heartbeats it would ask units to resend "
            "them: collectors sharing load need one chain book, or units pinned to a collector"
        )
    report.finish()
    return 0


def _cores() -> int:
    return os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
