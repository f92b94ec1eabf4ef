"""Many simulated units in one process: each its own paho client, TLS session and certificate,
all sharing one selector loop (no thread per client).

    python -m bench.fleetworker SPEC.json     (started by bench.fleet)

Each unit behaves like an agent on the wire: last will `offline` (retained), birth `online`
(retained) and a heartbeat on connect, a subscription to its cmd/+ topics, a heartbeat every
`heartbeat_s` from then on (also while the worker still connects its other units), a
PINGREQ when it sent nothing for `keepalive_s` (paho's loop_misc, once a second), and signed,
hash-chained door events at random (Poisson) intervals of mean `event_every_s`. It writes one
line per event it publishes to `events_out` (device, seq, event time in ns) and prints
`ready N` once its units are connected. SIGTERM ends it: every unit disconnects cleanly (no
will), and a summary goes to `summary_out`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import json
import random
import selectors
import signal
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.reasoncodes import ReasonCode

from agent.identity import load_private_key
from kernel.config import ClientTls
from kernel.mqtt import Will, make_client
from protocol.models import Heartbeat, Status
from protocol.signing import GENESIS
from protocol.topics import DeviceTopics

BOOT = "fleet-boot"
ALGO = ec.ECDSA(hashes.SHA256())


@dataclass
class Unit:
    site: str
    device: str
    key: ec.EllipticCurvePrivateKey
    client: mqtt.Client
    topics: DeviceTopics
    seq: int = 0
    prev: str = GENESIS
    connected: bool = False
    next_beat: float = 0.0
    sock: Any = None
    retry_at: float = 0.0  # when a lost unit tries again (after a broker restart)
    delay: float = 1.0  # its back-off: 1 s doubling to 30 s, as the agent's paho link
    started: float = field(default_factory=time.monotonic)

    def event(self) -> tuple[bytes, int]:
        """The next signed, chained event, and its time."""
        self.seq += 1
        ts = time.time_ns()
        body = {
            "v": 1,
            "id": uuid.uuid4().hex,
            "site": self.site,
            "device": self.device,
            "sensor": "pintu",
            "kind": "door",
            "state": "open" if self.seq % 2 else "closed",
            "seq": self.seq,
            "boot_id": BOOT,
            "ts": ts,
            "mono_ns": time.monotonic_ns(),
            "clock_synced": True,
            "prev": self.prev,
        }
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        sig = base64.urlsafe_b64encode(self.key.sign(data, ALGO)).rstrip(b"=").decode()
        self.prev = hashlib.sha256(data).hexdigest()
        return json.dumps({**body, "sig": sig}, separators=(",", ":")).encode(), ts

    def heartbeat(self, interval_s: int) -> bytes:
        return Heartbeat(
            site=self.site,
            device=self.device,
            ts=time.time_ns(),
            boot_id=BOOT,
            uptime_s=int(time.monotonic() - self.started),
            interval_s=interval_s,
            outbox_depth=0,
            clock_synced=True,
            last_seq=self.seq,
            chain_head=self.prev,
        ).to_json()

    def status(self, state: str) -> bytes:
        return _status(self.site, self.device, online=state == "online")


def _status(site: str, device: str, *, online: bool) -> bytes:
    return Status(
        site=site,
        device=device,
        state="online" if online else "offline",
        boot_id=BOOT,
        version="bench" if online else None,
    ).to_json()


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.rng = random.Random(spec.get("seed", 0))
        self.units: list[Unit] = []
        self.sel = selectors.DefaultSelector()
        self.stop = False
        self.disconnects: list[tuple[str, float, str]] = []
        self.connect_failures: list[str] = []
        self.heartbeats = 0
        self.events = 0
        self.reconnects = 0
        self.max_lag_ms = 0.0
        self.next_misc = 0.0
        self.next_beats = 0.0
        self.out = Path(spec["events_out"]).open("w", buffering=1)  # noqa: SIM115 (closed in close())

    def connect_all(self) -> None:
        site = self.spec["site"]
        for u in self.spec["units"]:
            device = u["device"]
            topics = DeviceTopics(site, device)
            key = load_private_key(Path(u["key"]))
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            tls = ClientTls(ca=Path(self.spec["ca"]), cert=Path(u["cert"]), key=Path(u["key"]))
            will = Will(topics.status, _status(site, device, online=False))
            client = make_client(tls, f"jaga-fleet-{device}", will=will)
            unit = Unit(site, device, key, client, topics)
            unit.client.user_data_set(unit)
            unit.client.on_connect = self._on_connect
            unit.client.on_disconnect = self._on_disconnect
            try:
                unit.client.connect(
                    "127.0.0.1", self.spec["port"], keepalive=self.spec["keepalive_s"]
                )
            except (OSError, ssl.SSLError) as exc:
                self.connect_failures.append(f"{device}: {exc}")
                continue
            unit.sock = unit.client.socket()
            self.sel.register(unit.sock, selectors.EVENT_READ, unit)
            self.units.append(unit)
            self._pump(0)  # CONNACKs as they come, so no session waits on a slow start
            self._keepalive()  # pings for those already in: the broker drops them at 1.5 x
            self._heartbeats()  # and their heartbeats, as their agents would
        deadline = time.monotonic() + 300
        while not all(u.connected for u in self.units) and time.monotonic() < deadline:
            self._pump(0.1)
            self._keepalive()
            self._heartbeats()
        print(f"ready {sum(u.connected for u in self.units)}", flush=True)

    def _keepalive(self) -> None:
        """paho's keepalive (PINGREQ when nothing was sent for keepalive_s), once a second."""
        now = time.monotonic()
        if now < self.next_misc:
            return
        self.next_misc = now + 1.0
        for unit in self.units:
            if unit.connected:
                unit.client.loop_misc()

    def _heartbeats(self) -> None:
        """Every connected unit's heartbeat that is due (each on its own schedule since its
        connection), looked at twice a second."""
        now = time.monotonic()
        if now < self.next_beats:
            return
        self.next_beats = now + 0.5
        hb = int(self.spec["heartbeat_s"])
        for unit in self.units:
            if unit.connected and now >= unit.next_beat:
                self.max_lag_ms = max(self.max_lag_ms, (now - unit.next_beat) * 1000)
                unit.next_beat += hb
                unit.client.publish(unit.topics.heartbeat, unit.heartbeat(hb), qos=1)
                self.heartbeats += 1

    def _on_connect(self, c: mqtt.Client, unit: Unit, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            self.connect_failures.append(f"{unit.device}: {rc}")
            return
        unit.connected = True
        unit.delay = 1.0
        c.publish(unit.topics.status, unit.status("online"), qos=1, retain=True)
        c.subscribe(unit.topics.cmd_filter, qos=1)
        hb = int(self.spec["heartbeat_s"])
        c.publish(unit.topics.heartbeat, unit.heartbeat(hb), qos=1)  # as the agent does
        unit.next_beat = time.monotonic() + hb
        self.heartbeats += 1

    def _on_disconnect(self, _c: mqtt.Client, unit: Unit, _f: Any, rc: ReasonCode, _p: Any) -> None:
        unit.connected = False
        if not self.stop:
            self.disconnects.append((unit.device, time.time(), str(rc)))
            unit.retry_at = time.monotonic() + unit.delay
        if unit.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(unit.sock)
            unit.sock = None

    def _reconnect(self) -> None:
        """Units whose connection was lost try again when their back-off is up (1 s, doubling
        to 30 s), as the agent's paho link does: a broker restart's reconnection storm."""
        now = time.monotonic()
        for unit in self.units:
            if unit.connected or unit.sock is not None or now < unit.retry_at:
                continue
            try:
                unit.client.reconnect()
            except (OSError, ssl.SSLError):
                unit.delay = min(30.0, unit.delay * 2)
                unit.retry_at = time.monotonic() + unit.delay
                continue
            unit.sock = unit.client.socket()
            self.sel.register(unit.sock, selectors.EVENT_READ, unit)
            self.reconnects += 1
            self._pump(0)

    def _pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            unit: Unit = key.data
            c = unit.client
            c.loop_read()
            sock = c.socket()
            while sock is not None and hasattr(sock, "pending") and sock.pending():
                c.loop_read()
                sock = c.socket()
        for unit in self.units:
            if unit.client.want_write():
                unit.client.loop_write()

    def run(self) -> None:
        every = float(self.spec["event_every_s"])
        now = time.monotonic()
        plan = [(now + self.rng.expovariate(1 / every), i) for i in range(len(self.units))]
        heapq.heapify(plan)
        while not self.stop:
            now = time.monotonic()
            while plan and plan[0][0] <= now:
                due, i = heapq.heappop(plan)
                self.max_lag_ms = max(self.max_lag_ms, (now - due) * 1000)
                unit = self.units[i]
                heapq.heappush(plan, (due + self.rng.expovariate(1 / every), i))
                if unit.connected:
                    payload, ts = unit.event()
                    unit.client.publish(unit.topics.event, payload, qos=1)
                    self.out.write(f"{unit.device} {unit.seq} {ts}\n")
                    self.events += 1
            self._keepalive()
            self._heartbeats()
            self._reconnect()
            wait = min(0.2, max(0.0, (plan[0][0] if plan else now + 0.2) - time.monotonic()))
            self._pump(wait)

    def close(self) -> None:
        for unit in self.units:
            if unit.connected:
                unit.client.disconnect()
        end = time.monotonic() + 5
        while time.monotonic() < end and any(u.client.want_write() for u in self.units):
            self._pump(0.05)
        self.out.close()
        summary = {
            "units": len(self.units),
            "connected_at_end": sum(u.connected for u in self.units),
            "connect_failures": self.connect_failures,
            "disconnects": self.disconnects,
            "heartbeats": self.heartbeats,
            "events": self.events,
            "reconnects": self.reconnects,
            "max_lag_ms": round(self.max_lag_ms, 1),
        }
        Path(self.spec["summary_out"]).write_text(json.dumps(summary))


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    worker = Worker(spec)

    def stop(_sig: int, _frame: object) -> None:
        worker.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.connect_all()
    try:
        worker.run()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
