"""Offline detection: a unit loses its network silently (SIGSTOP: no FIN, its socket stays
open) -> the broker publishes its will `offline` -> the collector stores it and raises
`unit-offline`; then a broker restart, which must page nobody.

    .venv/bin/python -m bench.offline [--quick]

Real `jaga-agent simulate` units at the agent's defaults (heartbeat 60 s, keepalive 6 s) and a
collector at its defaults (will grace 3 s, resume grace 30 s: the pauses start once that has
passed). Each unit is paused at its own random moment of its keepalive cycle. Mosquitto gives
up on a client 1.5 keepalives (9 s) after the last packet it had from it; the unit sends one
at least every 6 s (a PINGREQ when it has nothing else to say), so the will comes 3-9 s
after the pause, plus up to ~5 s: Mosquitto 2.0.11 looks for expired keepalives only every
few seconds. The collector raises the alert once the
unit has stayed away `will_grace_s` after its will. Times from the pause to:
- the will reaching an operator's subscription (at broker),
- the `offline` status point being visible in InfluxDB (polled every 0.2 s: an upper bound),
- the `unit-offline` alert reaching the operator.

Then the units are resumed, and once every one is back the broker restarts (SIGTERM, start):
Mosquitto publishes every unit's will as it goes, and the collector loses it too. Counted:
`unit-offline` alert changes the collector writes from the restart until the resume grace
and the will grace have both run out (must be 0), and how long the units took to be back.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.alerts import ALERT_FILTER, parse_alert
from bench.mqttclients import Session
from bench.report import Report, Row, parse_args, workdir
from bench.site import BenchSite
from bench.stats import summary
from devstack.process import ManagedProcess
from devstack.stack import UnitSpec
from protocol import topics

HEARTBEAT_S = 60
KEEPALIVE_S = 6
WILL_GRACE_S = 3
RESUME_GRACE_S = 30
TARGET_S = 20.0


@dataclass(frozen=True)
class Sizes:
    units: int


FULL = Sizes(units=12)
QUICK = Sizes(units=4)


@dataclass
class Seen:
    """Statuses and unit-offline alerts as an operator's subscription gets them."""

    wills: list[tuple[int, str]] = field(default_factory=list)
    births: list[tuple[int, str]] = field(default_factory=list)
    alerts: list[tuple[int, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_arrival(self, now: int, topic: str, payload: bytes) -> None:
        unit = topics.device_topic_of(topic)
        if unit is not None and unit.channel is topics.Channel.STATUS and payload:
            state = json.loads(payload).get("state")
            with self.lock:
                (self.wills if state == "offline" else self.births).append((now, unit.device))
        elif topics.parse_alert_topic(topic) is not None:
            alert = parse_alert(payload)
            if alert and alert.rule == "unit-offline":
                with self.lock:
                    self.alerts.append((now, alert.device, alert.state))

    def first(self, kind: str, device: str, since: int) -> int | None:
        with self.lock:
            if kind == "alert":
                times = [t for t, d, s in self.alerts if d == device and s == "raised"]
            else:
                times = [
                    t for t, d in (self.wills if kind == "will" else self.births) if d == device
                ]
        return min((t for t in times if t >= since), default=None)


def idle_scenario(root: Path) -> Path:
    path = root / "idle.toml"
    path.write_text("# nothing happens at the pins\nloop_s = 0\n")
    return path


def offline_changes(site: BenchSite, since: int) -> int:
    """unit-offline alert changes (raised, cleared) the collector wrote since `since`."""
    rows = site.query(
        f'SELECT count("id") FROM "alert" WHERE "rule" = \'unit-offline\' AND time >= {since}'
    )
    return int(sum(int(r.get("count", 0)) for r in rows))


def main() -> int:
    args = parse_args(__doc__ or "")
    sizes = QUICK if args.quick else FULL
    rng = random.Random(3)
    root = workdir("offline")
    report = Report(
        "offline",
        args.quick,
        {
            **sizes.__dict__,
            "heartbeat_s": HEARTBEAT_S,
            "keepalive_s": KEEPALIVE_S,
            "will_grace_s": WILL_GRACE_S,
            "resume_grace_s": RESUME_GRACE_S,
        },
    )
    scenario = idle_scenario(root)
    units = tuple(
        UnitSpec(f"off-{i:02d}", ("--door", "17:pintu"), scenario)
        for i in range(1, sizes.units + 1)
    )
    site = BenchSite(root, site="offline", agent_units=units, heartbeat_s=HEARTBEAT_S)
    seen = Seen()
    paused: dict[str, int] = {}
    stored: dict[str, int] = {}
    restart_at = 0
    back: dict[str, int] = {}
    restart_changes = -1
    restart_wills = 0
    try:
        site.provision()
        site.start_servers()
        collector_at = time.monotonic()
        site.start_collector("1")  # the defaults: will grace 4 s, resume grace 30 s
        watch = Session(
            "bench-offline-operator",
            site.operator,
            site.port,
            filters=[topics.device_filter(topics.Channel.STATUS, site=site.site), ALERT_FILTER],
            on_arrival=seen.on_arrival,
        ).start()
        agents: dict[str, ManagedProcess] = {u.device: site.stack.start_agent(u) for u in units}
        # The collector judges units only from its connection plus the resume grace.
        time.sleep(max(2.0, collector_at + RESUME_GRACE_S + 3 - time.monotonic()))
        # Pause each unit at its own random moment of the keepalive cycle.
        plan = sorted((rng.uniform(0, KEEPALIVE_S), d) for d in agents)
        start = time.monotonic()
        for at, device in plan:
            time.sleep(max(0.0, start + at - time.monotonic()))
            agents[device].pause()
            paused[device] = time.time_ns()
        print(f"  {len(paused)} units paused; waiting for their wills and alerts", flush=True)
        since = min(paused.values())
        deadline = time.monotonic() + 1.5 * KEEPALIVE_S + WILL_GRACE_S + 20
        while time.monotonic() < deadline:
            rows = site.query(
                f'SELECT "online", "device" FROM "status" WHERE "site" = \'{site.site}\' '
                f'AND "online" = 0 AND time >= {since}'
            )
            now = time.time_ns()
            for r in rows:
                d = str(r["device"])
                if d in paused and d not in stored and int(r["time"]) >= paused[d]:
                    stored[d] = now
            alerted = [d for d in paused if seen.first("alert", d, paused[d])]
            if len(stored) == len(paused) and len(alerted) == len(paused):
                break
            time.sleep(0.2)
        for agent in agents.values():
            agent.resume()
        resumed = time.time_ns()
        end = time.monotonic() + 60
        while time.monotonic() < end and not all(seen.first("birth", d, resumed) for d in agents):
            time.sleep(0.2)
        time.sleep(3.0)  # the heartbeats that clear the alerts
        print("  units back; restarting the broker", flush=True)
        assert site.stack.mosquitto is not None
        restart_at = time.time_ns()
        site.stack.mosquitto.restart()
        quiet_until = time.monotonic() + RESUME_GRACE_S + WILL_GRACE_S + 15
        while time.monotonic() < quiet_until:
            for d in agents:
                t = seen.first("birth", d, restart_at)
                if t is not None:
                    back.setdefault(d, t)
            time.sleep(0.2)
        with seen.lock:
            restart_wills = len({d for t, d in seen.wills if t >= restart_at})
        restart_changes = offline_changes(site, restart_at)
        watch.stop()
    finally:
        site.stop()
    first_alert = {d: seen.first("alert", d, t) for d, t in paused.items()}
    first_will = {d: seen.first("will", d, t) for d, t in paused.items()}
    s_will = summary([(w - paused[d]) / 1e9 for d, w in first_will.items() if w is not None])
    s_stored = summary([(stored[d] - t) / 1e9 for d, t in paused.items() if d in stored])
    s_alert = summary([(a - paused[d]) / 1e9 for d, a in first_alert.items() if a is not None])
    s_back = summary([(t - restart_at) / 1e9 for t in back.values()])
    missing = sorted(d for d, a in first_alert.items() if a is None)
    report.figure("will_at_broker_s", s_will)
    report.figure("offline_stored_s", s_stored)
    report.figure("offline_alert_s", s_alert)
    report.figure("units_paused", len(paused))
    report.figure("never_alerted", missing)
    report.figure("restart_units_back_s", s_back)
    report.figure("restart_units_back", len(back))
    report.figure("restart_wills_seen", restart_wills)
    report.figure("restart_offline_alert_changes", restart_changes)
    alert_ok = s_alert["max"] is not None and s_alert["max"] <= TARGET_S and not missing
    report.row(
        Row(
            "pause -> will at broker, median",
            s_will["p50"],
            "s",
            "1.5 x keepalive",
            1.5 * KEEPALIVE_S,
        )
    )
    report.row(
        Row(
            "pause -> offline stored, max",
            s_stored["max"],
            "s",
            "1.5 x keepalive",
            1.5 * KEEPALIVE_S,
        )
    )
    report.row(
        Row(
            "pause -> unit-offline alert, p50",
            s_alert["p50"],
            "s",
            "1.5 x keepalive",
            1.5 * KEEPALIVE_S,
        )
    )
    report.row(
        Row(
            "pause -> unit-offline alert, max",
            s_alert["max"],
            "s",
            "1.5 x keepalive",
            1.5 * KEEPALIVE_S,
            f"<= {TARGET_S:g} s",
            alert_ok,
        )
    )
    report.row(
        Row(
            "broker restart: unit-offline alerts",
            float(restart_changes),
            "",
            target="0",
            met=restart_changes == 0,
        )
    )
    report.row(
        Row(
            "broker restart: units back (last birth)",
            s_back["max"],
            "s",
            "units",
            float(len(back)),
            f"all {len(units)} back",
            len(back) == len(units),
        )
    )
    report.note(
        f"bound: Mosquitto drops a silent client 1.5 x keepalive ({1.5 * KEEPALIVE_S:g} s) "
        f"after its last packet; a unit sends one at least every {KEEPALIVE_S} s, so the will "
        f"comes {0.5 * KEEPALIVE_S:g}-{1.5 * KEEPALIVE_S:g} s after the network goes, plus up to "
        f"~5 s (Mosquitto 2.0.11 looks for expired keepalives every few seconds), the alert "
        f"{WILL_GRACE_S} s later (+ the collector's 1 s tick)"
    )
    report.note("stored: first InfluxDB poll (every 0.2 s) that shows the point, so an upper bound")
    report.note(
        f"broker restart: {restart_wills} of {len(units)} wills reached the operator (Mosquitto "
        "publishes them as it shuts down); the collector judges no unit while it has no broker, "
        f"then from its reconnection plus resume_grace_s ({RESUME_GRACE_S} s), or from the last "
        "unit's return plus that while units keep coming back: a unit that really died during "
        "a broker restart is reported that much later (bench.fleet --restart: 10,000 units)"
    )
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
