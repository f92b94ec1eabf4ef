"""Helpers of the fault tests: busy and idle units, an exact count of produced vs stored."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import ssl
import subprocess
import time
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from devstack.process import ManagedProcess
from devstack.soak import (
    Tally,
    UnitRecord,
    account,
    outbox_depth,
    outbox_path,
    read_outbox,
    start_influx,
    total,
)
from devstack.stack import CollectorProcess, Stack, UnitSpec
from protocol.alerting import Alert
from tests.support import eventually

SCENARIOS = Path(__file__).parent / "scenarios"


def rng(name: str) -> random.Random:
    """A random source per test; JAGA_FAULT_SEED replays a run, the seed is printed."""
    seed = int(os.environ.get("JAGA_FAULT_SEED", str(time.time_ns() % 2**32)))
    print(f"{name}: seed {seed} (JAGA_FAULT_SEED={seed} replays it)")
    return random.Random(seed)


def busy(unit: UnitSpec) -> UnitSpec:
    """The unit with its door opening and shutting five times a second, forever."""
    return dataclasses.replace(unit, scenario=SCENARIOS / f"busy-{unit.device}.toml")


def idle(unit: UnitSpec) -> UnitSpec:
    """The unit with nothing happening at its pins: it only empties its outbox."""
    return dataclasses.replace(unit, scenario=SCENARIOS / "idle.toml")


def devices(stack: Stack) -> list[str]:
    return [u.device for u in stack.units]


def produced(stack: Stack) -> int:
    """Events the units have produced so far, from their outboxes alone."""
    return sum(read_outbox(outbox_path(stack, d))[0] for d in devices(stack))


def start_site(stack: Stack, collector: dict[str, Any] | None = None) -> None:
    """Broker, InfluxDB (on ports it can restart on) and the collector (with `collector`
    merged into its collector.toml, e.g. {"alerts": {"resume_grace_s": 0}})."""
    stack.start_broker()
    start_influx(stack)
    if not collector:
        stack.start_collector()
        return
    path = stack.collector_config()
    config = tomllib.loads(path.read_text())
    for section, values in collector.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    path.write_text(tomli_w.dumps(config))
    stack.collector = CollectorProcess(path, path.parent / "collector.log")
    stack.collector.start(timeout=30)


def start_busy(stack: Stack, units: Iterable[UnitSpec] | None = None) -> None:
    for unit in units if units is not None else stack.units:
        stack.start_agent(busy(unit))


def quiet(stack: Stack) -> None:
    """Stop each running unit (SIGTERM) and start it again idle, so the counts can settle."""
    for unit in stack.units:
        agent = stack.agents.get(unit.device)
        if agent is not None:
            agent.stop()
            stack.start_agent(idle(unit), online=False)


def connects(part: ManagedProcess) -> int:
    """How often a unit has logged a connection to the broker since its latest start."""
    return part.log_tail(100_000).count("connected to ")


def settle(stack: Stack, timeout: float = 60.0) -> dict[str, UnitRecord]:
    """Wait until every outbox is empty and every produced seq is stored; return the records."""
    names = devices(stack)

    def done() -> dict[str, UnitRecord] | None:
        if any(outbox_depth(stack, d) for d in names):
            return None
        records = account(stack, names)
        t = total(records)
        return records if t.produced and t.lost == 0 else None

    deadline = time.monotonic() + timeout
    while True:
        first = done()
        if first is not None:
            time.sleep(1.0)  # a late duplicate, or a late camera event, would show now
            again = done()
            if again is not None and total(again).produced == total(first).produced:
                return again
        if time.monotonic() > deadline:
            records = account(stack, names)
            missing = {d: r.missing()[:20] for d, r in records.items() if r.missing()}
            depth = {d: outbox_depth(stack, d) for d in names}
            raise AssertionError(
                f"not settled in {timeout}s: {total(records).line('now')}; missing {missing}; "
                f"outbox depth {depth}"
            )
        time.sleep(0.5)


def assert_exactly_once(records: dict[str, UnitRecord]) -> Tally:
    """Every produced seq stored once, as the event the unit holds under it; nothing else."""
    for device, r in records.items():
        t = r.tally()
        assert t.lost == 0, f"{device}: lost seqs {r.missing()[:20]} ({t.line(device)})"
        assert t.dup == 0, f"{device}: duplicated ({t.line(device)})"
        assert t.stored == t.produced, t.line(device)
    t = total(records)
    print(t.line("counts"))
    return t


def write_agent_toml(path: Path, **changes: Any) -> None:
    """Change top-level or [broker] keys of a unit's agent.toml (keys given as 'broker.x')."""
    config = tomllib.loads(path.read_text())
    for key, value in changes.items():
        where = config
        *parents, leaf = key.split(".")
        for p in parents:
            where = where[p]
        where[leaf] = value
    path.write_text(tomli_w.dumps(config))


def mqtt_client(
    stack: Stack, who: str, *, client_id: str | None = None, connect: bool = True
) -> mqtt.Client:
    """A paho client (MQTT 5) with a certificate of the registry: a unit, or an identity."""
    reg = stack.registry
    if who.startswith(("operator-", "collector-")):
        cert, key = reg / "identities" / f"{who}.crt", reg / "identities" / f"{who}.key"
    else:
        d = reg / "devices" / stack.site / who
        cert, key = d / "device.crt", d / "device.key"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{who}-{time.monotonic_ns()}",
        protocol=mqtt.MQTTv5,
    )
    client.tls_set(
        ca_certs=str(reg / "ca" / "ca.crt"),
        certfile=str(cert),
        keyfile=str(key),
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if connect:
        client.connect("127.0.0.1", stack.broker_port)
        client.loop_start()
        eventually(client.is_connected, timeout=10)
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


class AlertWatch:
    """An operator's view of the site's retained alerts (jaga/v1/<site>/alert/+)."""

    def __init__(self, stack: Stack) -> None:
        self.seen: list[Alert] = []
        self._topic = f"jaga/v1/{stack.site}/alert/+"
        self._client = mqtt_client(stack, "operator-watch", connect=False)
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect  # again after a broker restart
        self._client.connect("127.0.0.1", stack.broker_port)
        self._client.loop_start()
        eventually(self._client.is_connected, timeout=10)

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            self.seen.append(Alert.model_validate_json(msg.payload))

    def raised(self, rule: str, device: str) -> Alert | None:
        return next((a for a in self.seen if a.rule == rule and a.device == device), None)

    def close(self) -> None:
        close(self._client)


@contextlib.contextmanager
def small_disk(where: Path, *, mb: int) -> Iterator[Path]:
    """A tmpfs of `mb` MB mounted at `where` (made here): a disk a test can fill to the last
    byte. Skips the test where it cannot be mounted (not root, no tmpfs)."""
    where.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={mb}m,mode=0755", "jaga-test-disk", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
