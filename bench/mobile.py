"""Mobile data: the bytes a unit sends and receives on its one connection to the broker (TLS,
MQTT, heartbeats, pings, events, checkpoints; pictures apart), scaled to a day and a month.

    .venv/bin/python -m bench.mobile [--quick]

Real `jaga-agent simulate` units (a door, no camera) run side by side against a real broker
and collector, each at its own settings, for the same window:
- `idle`: the agent's defaults (heartbeat 60 s, keepalive 6 s), nothing at its pins;
- `busy`: the same, its door opened and shut once a minute all day (2,880 events a day);
- `idle, before #21`: the settings before (heartbeat 10 s, keepalive 15 s), for reference;
- `idle, keepalive 15 s`: heartbeat 60 s with the old keepalive: what the 20 s target costs.

Bytes are the kernel's own counters of each unit's TCP socket (`ss -ti`: bytes_acked,
bytes_received, segs_out, segs_in), read once the unit is connected and settled and again at
the end of the window; the difference is scaled to 86,400 s (a day measured for the window,
not for a day: say so when quoting it). A mobile operator bills IP packets: each TCP segment
(data or a bare ACK) carries 52 bytes of IPv4 + TCP headers with timestamps on top of its
payload, so `ip` = payload + 52 x segments. The first reading (TLS handshake with both
certificates, CONNECT, birth, subscriptions, the first heartbeat) is what a (re)connection
costs.
"""

from __future__ import annotations

import re
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from bench.report import Report, Row, parse_args, workdir
from bench.site import BenchSite
from devstack.stack import UnitSpec

DAY_S = 86_400
MONTH_DAYS = 30
HEADERS = 52
"""IPv4 (20) + TCP (20) + the timestamps option (12) per segment."""
SETTLE_S = 5.0
BUSY = """# a door opened and shut once a minute: 2 events a minute, 2,880 a day
loop_s = 60

[[step]]
at = 5.0
sensor = "pintu"
action = "open"

[[step]]
at = 35.0
sensor = "pintu"
action = "close"
"""


@dataclass(frozen=True)
class Variant:
    device: str
    label: str
    heartbeat_s: int
    keepalive_s: int
    busy: bool


VARIANTS = (
    Variant("mob-idle", "idle", 60, 6, False),
    Variant("mob-busy", "busy (an event every 30 s)", 60, 6, True),
    Variant("mob-before", "idle, before #21 (heartbeat 10 s, keepalive 15 s)", 10, 15, False),
    Variant("mob-ka15", "idle, keepalive 15 s (a lost unit reported in ~30 s)", 60, 15, False),
)


@dataclass(frozen=True)
class Sizes:
    window_s: float


FULL = Sizes(window_s=300.0)
QUICK = Sizes(window_s=60.0)


@dataclass(frozen=True)
class Counters:
    sent: int
    received: int
    segs_out: int
    segs_in: int

    @property
    def payload(self) -> int:
        return self.sent + self.received

    @property
    def ip(self) -> int:
        return self.payload + HEADERS * (self.segs_out + self.segs_in)

    def minus(self, other: Counters) -> Counters:
        return Counters(
            self.sent - other.sent,
            self.received - other.received,
            self.segs_out - other.segs_out,
            self.segs_in - other.segs_in,
        )


def counters(pid: int, port: int) -> Counters | None:
    """The TCP counters of pid's established connection to the broker's port."""
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if f"pid={pid}," in line and i + 1 < len(lines):
            info = lines[i + 1]

            def field(name: str, text: str = info) -> int:
                m = re.search(rf"\b{name}:(\d+)", text)
                return int(m.group(1)) if m else 0

            return Counters(
                field("bytes_acked"), field("bytes_received"), field("segs_out"), field("segs_in")
            )
    return None


def set_rates(agent_toml: Path, v: Variant) -> None:
    config = tomllib.loads(agent_toml.read_text())
    config["heartbeat_s"] = v.heartbeat_s
    config["broker"]["keepalive_s"] = v.keepalive_s
    agent_toml.write_text(tomli_w.dumps(config))


def main() -> int:
    args = parse_args(__doc__ or "")
    sizes = QUICK if args.quick else FULL
    root = workdir("mobile")
    report = Report(
        "mobile",
        args.quick,
        {**sizes.__dict__, "variants": [v.__dict__ for v in VARIANTS], "busy_scenario": BUSY},
    )
    idle = root / "idle.toml"
    idle.write_text("loop_s = 0\n")
    busy = root / "busy.toml"
    busy.write_text(BUSY)
    units = tuple(
        UnitSpec(v.device, ("--door", "17:pintu"), busy if v.busy else idle) for v in VARIANTS
    )
    site = BenchSite(root, site="mobile", agent_units=units, heartbeat_s=60)
    connect: dict[str, Counters] = {}
    window: dict[str, Counters] = {}
    wall = 0.0
    try:
        site.provision()
        site.start_servers()
        site.start_collector("1")
        for v in VARIANTS:  # after the servers: the stack writes the units' agent.toml again
            set_rates(site.stack.unit_dir(v.device) / "agent.toml", v)
        procs = {v.device: site.stack.start_agent(v) for v in units}
        time.sleep(SETTLE_S)
        for d, p in procs.items():
            c = counters(p.pid, site.port)
            if c is None:
                raise RuntimeError(f"{d} has no connection to the broker")
            connect[d] = c
        t0 = time.monotonic()
        print(f"  {len(procs)} units connected; counting {sizes.window_s:g} s", flush=True)
        time.sleep(sizes.window_s)
        wall = time.monotonic() - t0
        for d, p in procs.items():
            c = counters(p.pid, site.port)
            if c is None:
                raise RuntimeError(f"{d} lost its connection to the broker during the window")
            window[d] = c.minus(connect[d])
    finally:
        site.stop()
    scale = DAY_S / wall
    per_day: dict[str, dict[str, float]] = {}
    for v in VARIANTS:
        w = window[v.device]
        per_day[v.label] = {
            "ip_bytes": round(w.ip * scale),
            "payload_bytes": round(w.payload * scale),
            "segments": round((w.segs_out + w.segs_in) * scale),
            "sent_bytes": round(w.sent * scale),
            "received_bytes": round(w.received * scale),
        }
    idle_v, busy_v, before_v, slow_v = VARIANTS
    idle_day = per_day[idle_v.label]["ip_bytes"]
    busy_day = per_day[busy_v.label]["ip_bytes"]
    before_day = per_day[before_v.label]["ip_bytes"]
    report.figure("idle_bytes_per_day_per_unit", idle_day)
    report.figure("busy_bytes_per_day_per_unit", busy_day)
    report.figure("idle_bytes_per_day_before", before_day)
    report.figure("idle_mb_per_month_per_unit", round(idle_day * MONTH_DAYS / 1e6, 1))
    report.figure("busy_mb_per_month_per_unit", round(busy_day * MONTH_DAYS / 1e6, 1))
    report.figure("connect_bytes", connect[idle_v.device].ip)
    report.figure("window_s", round(wall, 1))
    report.extra["per_day"] = per_day
    report.extra["window"] = {d: c.__dict__ for d, c in window.items()}
    report.extra["connect"] = {d: c.__dict__ for d, c in connect.items()}
    report.row(
        Row(
            "idle unit, per day (IP bytes)",
            idle_day / 1e3,
            "kB",
            "before #21",
            before_day / 1e3,
            key=True,
        )
    )
    report.row(
        Row(
            "busy unit, per day (IP bytes)",
            busy_day / 1e3,
            "kB",
            "idle",
            idle_day / 1e3,
            key=True,
        )
    )
    slow_day = per_day[slow_v.label]["ip_bytes"]
    report.figure("idle_bytes_per_day_keepalive_15s", slow_day)
    report.row(
        Row(
            "what the 20 s target costs: idle with keepalive 6 s",
            idle_day / 1e3,
            "kB",
            "keepalive 15 s",
            slow_day / 1e3,
            key=True,
        )
    )
    report.row(Row("idle unit, per 30-day month", idle_day * MONTH_DAYS / 1e6, "MB", key=True))
    report.row(Row("busy unit, per 30-day month", busy_day * MONTH_DAYS / 1e6, "MB", key=True))
    report.row(
        Row(
            "one (re)connection: TLS handshake, CONNECT, birth, first heartbeat",
            connect[idle_v.device].ip / 1e3,
            "kB",
            key=True,
        )
    )
    report.note(
        f"measured for {wall:.0f} s and scaled to a day (x {scale:.0f}); IP bytes = TCP payload "
        f"(TLS records) + {HEADERS} bytes of IPv4/TCP headers per segment, ACKs included; "
        "pictures, DNS, NTP and the mobile network's own overhead are not counted; a day "
        "without reconnections (each one costs the connection figure again)"
    )
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
