"""The Home Assistant bridge's cost on the collector's thread (#20 at #21's scale).

    .venv/bin/python -m bench.ha_republish [--quick] [--units N]

A registry of N units (10 per site, each with a camera and four inputs; a tenth of them with
a stored still of 30 KB) is read by a real bridge whose publisher is a paho client (the
collector's kind, StreamClient) connected to a real Mosquitto on loopback. Measured, each on
the collector's thread:

- the registry read (first, and again with nothing changed);
- everything published again, at a first start (all of it new to the state file) and at
  HA's birth: the longest single turn (how long event ingest waits at most), the turns it
  took, its whole span, how many publishes and bytes it sent and how many paho refused;
  the loop is simulated by sleeping `--gap-ms` between turns (a batch being stored);
- turns with nothing new for 6 s (panels, states, the state file's saves): the bridge's
  share of the thread and its longest turn; and one save of the state file.

No timing is asserted: a figure taken on a shared machine says so in its load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import Report, Row, parse_args, workdir
from broker.alerts.config import AlertsConfig
from broker.alerts.engine import AlertEngine
from broker.alerts.store import AlertStore
from broker.collector.gc_tuning import collector_gc
from broker.home_assistant import bridge as ha
from broker.home_assistant.codes import PanelCodes
from broker.home_assistant.config import HomeAssistantConfig
from broker.home_assistant.registry import RegistryReader
from devstack.mosquitto import Mosquitto, plain_config
from devstack.ports import free_port
from kernel.link import Message
from kernel.mqtt import make_client
from kernel.mqtt_stream import StreamClient
from protocol.alerting import ArmingHow
from provisioning.records import DeviceRecord, SiteRecord
from provisioning.registry import Registry

PER_SITE = 10
PICTURE_BYTES = 30_000
IDLE_WINDOW_S = 6.0
"""Longer than the state file's save interval (5 s)."""


class Paho:
    """The bridge's publisher: a paho client on a real broker, counting what it sends."""

    def __init__(self, port: int) -> None:
        self.client = make_client(None, "bench-ha", client_class=StreamClient)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.count = 0
        self.bytes = 0
        self.refused = 0
        """Publishes paho refused (MQTT_ERR_QUEUE_SIZE: its 16-bit message ids wrapped)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        self.count += 1
        self.bytes += len(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        self.refused += info.rc != 0
        return info.rc == 0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def build_registry(root: Path, units: int) -> list[tuple[str, str]]:
    from agent.config import SensorConfig

    reg = Registry(root)
    sensors = [
        SensorConfig(name="pintu", kind="door", pin=17),  # type: ignore[arg-type]
        SensorConfig(name="lorong", kind="motion", pin=27),  # type: ignore[arg-type]
        SensorConfig(name="tamper", kind="tamper", pin=22),  # type: ignore[arg-type]
        SensorConfig(name="ronda", kind="patrol", pin=23),  # type: ignore[arg-type]
    ]
    now = datetime.now(UTC)
    keys = []
    for i in range(units):
        site = f"site-{i // PER_SITE:04d}"
        if i % PER_SITE == 0:
            reg.save_site(
                SiteRecord(id=site, name=f"Gudang {i // PER_SITE}", timezone="Asia/Jakarta",
                           broker_host="127.0.0.1")
            )  # fmt: skip
        device = f"unit-{i:05d}"
        reg.save_device(
            DeviceRecord(site=site, device=device, created=now, camera=True, sensors=sensors,
                         cert_serial=i + 1)
        )  # fmt: skip
        keys.append((site, device))
    return keys


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--units", type=int, default=None)
        p.add_argument("--gap-ms", type=float, default=20.0)

    args = parse_args(__doc__ or "", extra)
    units = args.units or (1000 if args.quick else 10_000)
    root = workdir("ha_republish")
    report = Report("ha_republish", args.quick, {"units": units, "gap_ms": args.gap_ms})
    keys = build_registry(root / "registry", units)

    reader = RegistryReader(root / "registry", None)
    full_read_s = timed(reader.read)

    port = free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(plain_config(port, root / "mosq"))
    broker = Mosquitto(conf, port, root / "mosq").start()
    publisher = Paho(port)
    store = AlertStore(root / "alerts.sqlite3")
    gc_tuned = None
    try:
        engine = AlertEngine(AlertsConfig(), store, time.time_ns())
        for site in sorted({s for s, _ in keys}):
            engine.arm(site, "bench", ArmingHow.CLI, time.time_ns())
        pictures = root / "pictures"
        pictures.mkdir()
        connected = [False]
        bridge = ha.HomeAssistantBridge(
            HomeAssistantConfig(enabled=True, registry_poll_s=3600),
            client_id="bench",
            registry_dir=root / "registry",
            data_dir=root,
            sites=None,
            alerts=AlertsConfig(),
            codes=PanelCodes({}, lambda n, s: False),
            who=lambda n: n,
            publisher=publisher,
            connected=lambda: connected[0],
            connections=lambda: 1,
            picture_path=lambda sha: pictures / sha,
            waiting=lambda: len(publisher.client._out_messages),
        )

        cpu: list[float] = []

        def turn() -> float:
            """One turn's wall time; its CPU time (this thread's: what load cannot stretch)
            goes to `cpu`."""
            started = time.thread_time()
            wall = timed(lambda: bridge.turn(engine, lambda c: None, lambda d, n: None))
            cpu.append(time.thread_time() - started)
            return wall

        gc_tuned = collector_gc()  # as the collector's loop runs (fewer collector passes)
        gc_tuned.__enter__()
        first_poll_s = turn()  # not connected: the registry is read, nothing published
        for i, (site, device) in enumerate(keys[:: max(1, 10)]):
            sha = f"{i:064x}"
            (pictures / sha).write_bytes(os.urandom(PICTURE_BYTES))
            bridge.on_picture(site, device, sha)
        turn()
        connected[0] = True

        def republish(name: str) -> None:
            """Turns until everything is published again, a batch's gap between them."""
            publisher.count = publisher.bytes = publisher.refused = 0
            cpu.clear()
            spans = [turn()]
            started = time.perf_counter()
            while bridge.republishing():
                time.sleep(args.gap_ms / 1000)
                spans.append(turn())
            whole_s = time.perf_counter() - started + spans[0]
            ordered = sorted(spans)
            report.figure(f"{name}_longest_turn_ms", round(ordered[-1] * 1000, 1))
            report.figure(f"{name}_longest_turn_cpu_ms", round(max(cpu) * 1000, 1))
            report.figure(f"{name}_cpu_s", round(sum(cpu), 2))
            report.figure(f"{name}_turn_ms_p50", round(statistics.median(spans) * 1000, 1))
            report.figure(f"{name}_turn_ms_p99", round(ordered[int(len(spans) * 0.99)] * 1000, 1))
            report.figure(f"{name}_turns", len(spans))
            report.figure(f"{name}_whole_s", round(whole_s, 2))
            report.figure(f"{name}_publishes", publisher.count)
            report.figure(f"{name}_mb", round(publisher.bytes / 1e6, 1))
            report.figure(f"{name}_refused_by_paho", publisher.refused)
            what = {"start": "first start", "birth": "HA's birth"}[name]
            report.row(
                Row(f"{what}, {units:,} units: longest turn", ordered[-1] * 1000, "ms", key=True)
            )
            report.row(Row(f"{what}: longest turn, thread CPU", max(cpu) * 1000, "ms"))
            report.row(Row(f"{what}: turn p99", ordered[int(len(spans) * 0.99)] * 1000, "ms"))
            report.row(Row(f"{what}: thread CPU in all", sum(cpu), "s"))
            report.row(Row(f"{what}: turns", len(spans), ""))
            report.row(Row(f"{what}: whole span", whole_s, "s"))
            report.row(Row(f"{what}: publishes paho refused", publisher.refused, "", key=True))

        republish("start")  # the connection is new: everything (all of it new to the file too)
        bridge.take(Message("homeassistant/status", b"online", 0))
        republish("birth")  # HA restarted: everything again
        publisher.count = 0
        idle: list[float] = []
        window = time.perf_counter()
        while time.perf_counter() - window < IDLE_WINDOW_S:  # the loop goes on, nothing new
            time.sleep(args.gap_ms / 1000)
            idle.append(turn())
        idle_ms_per_s = sum(idle) * 1000 / IDLE_WINDOW_S
        save_s = timed(bridge._save)
        repoll_s = timed(bridge.registry.read)
    finally:
        if gc_tuned is not None:
            gc_tuned.__exit__(None, None, None)
        publisher.close()
        store.close()
        broker.stop()

    report.figure("registry_full_read_s", round(full_read_s, 3))
    report.figure("registry_first_poll_turn_s", round(first_poll_s, 3))
    report.figure("registry_unchanged_reread_s", round(repoll_s, 4))
    report.figure("idle_turn_ms_p50", round(statistics.median(idle) * 1000, 3))
    report.figure("idle_turn_ms_max", round(max(idle) * 1000, 3))
    report.figure("idle_ms_per_s", round(idle_ms_per_s, 2))
    report.figure("idle_turn_publishes", publisher.count)
    report.figure("state_file_save_ms", round(save_s * 1000, 1))
    report.row(Row("registry read, nothing changed", repoll_s * 1000, "ms"))
    report.row(Row("nothing new: bridge's share of the thread", idle_ms_per_s, "ms/s", key=True))
    report.row(Row("nothing new: longest turn", max(idle) * 1000, "ms"))
    report.row(Row("state file save", save_s * 1000, "ms"))
    report.finish()


if __name__ == "__main__":
    main()
