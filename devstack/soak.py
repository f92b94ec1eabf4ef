"""`make soak`: the demo fleet under random faults, then an exact count of what was kept.

The three demo units play their scenarios (3x faster than the demo, `--speed`) while faults
are injected: every 3-15 s one of broker restart, broker SIGKILL, collector restart,
collector SIGKILL, InfluxDB paused (SIGSTOP, up to 20 s) or stopped (up to a minute), or a
hostile unit's attack (below); and, alongside, a unit SIGKILLed and started again every 1.5 s
on average plus its restart (`--unit-kill-every`), so a 10-minute soak kills units about two
hundred times. Every injection is logged.

The hostile unit (`maling-01`, enrolled with the fleet: its own valid certificate and key, not
one of the counted units) connects and, within the collector's per-unit rate budget, sends a
burst of first chunks of pictures it never finishes (more than the collector's MQTT Receive
Maximum), garbage on each of its topics, replays of its own old events, a fork and an event
at the time of its last one, and the good units' events passed off as its own. The good units
must lose nothing meanwhile: their accounting below is the soak's verdict. At the end
the faults stop, every unit is restarted on an idle scenario (nothing new happens at its
pins) so its outbox can drain, and the soak compares each unit's outbox with InfluxDB:

    soak: <produced> produced, <stored> stored, <lost> lost, <dup> duplicated

- produced: the sum over units of the outbox's last seq (seqs are 1..last, no holes).
- stored: the sum over units of the distinct seqs found in InfluxDB's `event` measurement.
- lost: seqs in 1..last_seq of a unit with no point in InfluxDB.
- duplicated: for each unit, event points beyond one per seq (the same seq stored twice, as
  a different content or under another time or series: a reader would count it twice), plus
  seqs whose one stored point is not the event the unit holds under that seq (another `id`:
  the seq was used for two events), plus seqs stored that the unit never produced.
  Re-delivering the same event is not a duplicate: it lands on the same InfluxDB point.

The exit status is 0 only when nothing was lost or duplicated. This module also holds the
accounting that the fault tests share (`account`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import shutil
import sqlite3
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import tomli_w
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from devstack.forwarder import V2WriteForwarder
from devstack.influx import InfluxDB
from devstack.ports import free_port
from devstack.process import ManagedProcess, StartError
from devstack.stack import DATABASE, DEMO_UNITS, Stack, UnitSpec, jaga
from kernel.config import ClientTls
from kernel.mqtt import make_client
from protocol import topics
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, PrivateKey, event_hash, sign
from protocol.snapshot import SEPARATOR, SnapshotChunk

log = logging.getLogger("soak")

P = TypeVar("P", bound=ManagedProcess)
IDLE = "# Nothing happens at the unit's pins: it only delivers what its outbox holds.\nloop_s = 0\n"


# accounting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """What one unit (or a sum of units) produced and what InfluxDB holds of it."""

    produced: int = 0
    stored: int = 0
    lost: int = 0
    dup: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.produced + other.produced,
            self.stored + other.stored,
            self.lost + other.lost,
            self.dup + other.dup,
        )

    def line(self, prefix: str = "soak") -> str:
        return (
            f"{prefix}: {self.produced} produced, {self.stored} stored, {self.lost} lost, "
            f"{self.dup} duplicated"
        )


@dataclass(frozen=True)
class UnitRecord:
    """One unit's side (outbox) and the store's side (InfluxDB) of its events."""

    device: str
    last_seq: int
    outbox_ids: dict[int, str]
    """seq -> event id, for every event still kept in the outbox."""
    stored: list[tuple[int, str]]
    """(seq, id) of every `event` point in InfluxDB for the unit."""

    def tally(self) -> Tally:
        per_seq = Counter(seq for seq, _ in self.stored)
        distinct = set(per_seq)
        wanted = set(range(1, self.last_seq + 1))
        lost = len(wanted - distinct)
        twice = sum(n - 1 for n in per_seq.values())
        ids = dict(self.stored)
        other = sum(
            1
            for seq, n in per_seq.items()
            if n == 1 and seq in self.outbox_ids and ids[seq] != self.outbox_ids[seq]
        )
        phantom = len(distinct - wanted)
        return Tally(self.last_seq, len(distinct), lost, twice + other + phantom)

    def missing(self) -> list[int]:
        have = {seq for seq, _ in self.stored}
        return [s for s in range(1, self.last_seq + 1) if s not in have]


def outbox_path(stack: Stack, device: str) -> Path:
    """The unit's outbox, in the data_dir its agent.toml names."""
    config = tomllib.loads((stack.unit_dir(device) / "agent.toml").read_text())
    return Path(config["data_dir"]) / "outbox.sqlite3"


def read_outbox(path: Path) -> tuple[int, dict[int, str], int]:
    """(last seq, seq -> id, messages not yet acknowledged) of an outbox, read-only."""
    if not path.exists():
        return 0, {}, 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        ids = {
            int(seq): str(json.loads(payload)["id"])
            for seq, payload in db.execute("SELECT seq, payload FROM message WHERE seq IS NOT NULL")
        }
        depth = db.execute("SELECT count(*) FROM message WHERE delivered_ns IS NULL").fetchone()
    finally:
        db.close()
    return (int(row[0]) if row else 0), ids, int(depth[0])


def outbox_depth(stack: Stack, device: str) -> int:
    return read_outbox(outbox_path(stack, device))[2]


def stored_events(stack: Stack, device: str) -> list[tuple[int, str]]:
    """(seq, id) of every `event` point InfluxDB holds for the unit."""
    assert stack.influx is not None
    rows = stack.influx.query(
        f'SELECT "seq", "id" FROM "event" WHERE "site" = \'{stack.site}\' '
        f"AND \"device\" = '{device}'",
        db=DATABASE,
    )
    return [(int(r["seq"]), str(r["id"])) for r in rows]


def record(stack: Stack, device: str) -> UnitRecord:
    last_seq, ids, _ = read_outbox(outbox_path(stack, device))
    return UnitRecord(device, last_seq, ids, stored_events(stack, device))


def account(stack: Stack, devices: list[str] | None = None) -> dict[str, UnitRecord]:
    """Each unit's record, read now from its outbox and from InfluxDB."""
    names = devices if devices is not None else [u.device for u in stack.units]
    return {d: record(stack, d) for d in names}


def total(records: dict[str, UnitRecord]) -> Tally:
    out = Tally()
    for r in records.values():
        out = out + r.tally()
    return out


def settled(stack: Stack, devices: list[str] | None = None) -> bool:
    """Every unit's outbox is empty and every seq it produced is in InfluxDB."""
    names = devices if devices is not None else [u.device for u in stack.units]
    if any(outbox_depth(stack, d) for d in names):
        return False
    t = total(account(stack, names))
    return t.lost == 0 and t.produced > 0


# ports that survive restarts ---------------------------------------------------------------

STABLE_PORTS = range(20_000, 32_768)
"""Below Linux's ephemeral range (32768-60999): while a server is down for a fault, no
outgoing connection (nor a TCP self-connect to the dead port) and no other test's
`free_port()` can take its port, so it can start again on it."""


def stable_port() -> int:
    """A free loopback port outside the ephemeral range: devstack.ports.free_port, which
    gives each pytest-xdist worker its own slice and never offers a port twice in a row."""
    port = free_port()
    if port not in STABLE_PORTS:
        raise RuntimeError("no free port in 20000-32767")
    return port


def start_influx(stack: Stack) -> InfluxDB:
    """Stack.start_influx, on stable ports: InfluxDB can be stopped and started again."""
    influx = InfluxDB(stack.root / "influx")
    influx.http_port, influx.rpc_port = stable_port(), stable_port()
    stack.influx = influx.start()
    influx.create_database(DATABASE)
    stack.forwarder = V2WriteForwarder(influx.url).start()
    return influx


# the hostile unit ---------------------------------------------------------------------------

HOSTILE = "maling-01"
HOSTILE_WIRING = ("--door", "17:pintu-maling")
HOSTILE_CHUNKS = 2_100
"""First chunks per attack: more than the collector's MQTT Receive Maximum (2,000)."""


def enrol_hostile(stack: Stack) -> None:
    """Enrol the hostile unit in the site's registry (a certificate, a key, a broker ACL block
    once the broker config is made), as a technician would enrol any unit."""
    jaga(
        "jaga-provision",
        "--dir",
        stack.registry,
        "device",
        "add",
        stack.site,
        HOSTILE,
        *HOSTILE_WIRING,
        "--pin-factory",
        "mock",
        "--generate-key",
    )


@dataclass
class HostileUnit:
    """A unit whose firmware turned against the site, with its own valid certificate and key.

    Each attack stays within the collector's per-unit budget (`unit_rate_per_s` 50 and a burst
    of `unit_burst` 500 by default): `burst` messages at once, then `rate_per_s`.
    """

    stack: Stack
    rng: random.Random
    chunks: int = HOSTILE_CHUNKS
    burst: int = 400
    rate_per_s: float = 45.0
    sent: Counter[str] = dataclasses.field(default_factory=Counter)
    own: list[Event] = dataclasses.field(default_factory=list)
    """Its own signed events so far, in seq order: what it replays."""
    _prev: str = GENESIS
    _ts: int = 0
    _attacks: int = 0

    @property
    def unit_topics(self) -> topics.DeviceTopics:
        return topics.DeviceTopics(self.stack.site, HOSTILE)

    def _key(self) -> PrivateKey:
        path = self.stack.registry / "devices" / self.stack.site / HOSTILE / "device.key"
        key = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise TypeError(f"{path} holds no unit key ({type(key).__name__})")
        return key

    def _event(self, seq: int, prev: str, ts: int, state: str) -> Event:
        body = EventBody(
            id=f"{HOSTILE}-{seq}-{state}-{self.rng.randrange(2**32):08x}",
            site=self.stack.site,
            device=HOSTILE,
            sensor="pintu-maling",
            kind=Kind.DOOR,
            state=state,
            seq=seq,
            boot_id="hostile",
            ts=ts,
            mono_ns=time.monotonic_ns(),
            clock_synced=True,
            prev=prev,
        )
        return sign(body, self._key())

    def _next_event(self) -> bytes:
        """A genuine next event of its own chain (stored; replayed by later attacks)."""
        self._ts = max(time.time_ns(), self._ts + 1)
        seq = len(self.own) + 1
        event = self._event(seq, self._prev, self._ts, "open" if seq % 2 else "closed")
        self._prev = event_hash(event)
        self.own.append(event)
        return event.to_json()

    def messages(self) -> list[tuple[str, str, bytes]]:
        """One attack: (kind, topic, payload) in sending order."""
        t = self.unit_topics
        self._attacks += 1
        out: list[tuple[str, str, bytes]] = [("own-event", t.event, self._next_event())]
        for i in range(self.chunks):
            event_id = f"never-{self._attacks}-{i}-{self.rng.randrange(2**32):08x}"
            header = SnapshotChunk(
                event=event_id,
                sha256=self.rng.randbytes(32).hex(),
                role="still",
                size=4096,
                index=0,
                count=4,
                offset=0,
            )
            payload = header.to_json() + SEPARATOR + self.rng.randbytes(1024)
            out.append(("first-chunk", t.snapshot(event_id), payload))
        garbage = [
            (t.event, self.rng.randbytes(64)),
            (t.event, b"{}"),
            (t.heartbeat, b"\xff\xfe not json"),
            (t.heartbeat, _heartbeat(self.stack.site, uptime_s=2**64)),
            (t.status, b'{"v": 1, "state": "online"}'),
            (t.snapshot("garbage"), b"not a chunk"),
            (f"{t.prefix}/snapshot/..", b'{"v": 1}\n' + self.rng.randbytes(16)),
        ]
        out += [("garbage", topic, payload) for topic, payload in garbage]
        out += [("replay", t.event, e.to_json()) for e in self.own]
        last = self.own[-1]
        fork = self._event(last.seq, last.prev, last.ts, "held-open")  # its seq, other content
        same_time = self._event(last.seq + 1, self._prev, last.ts, "closed")
        out += [("fork", t.event, fork.to_json()), ("same-time", t.event, same_time.to_json())]
        out += [("passed-off", t.event, raw) for raw in self._good_events()]
        return out

    def _good_events(self) -> list[bytes]:
        """A few of the good units' stored events, as recorded off the wire."""
        if self.stack.influx is None:
            return []
        try:
            rows = self.stack.influx.query(
                f'SELECT "raw" FROM "event" WHERE "device" <> \'{HOSTILE}\' '
                "ORDER BY time DESC LIMIT 5",
                db=DATABASE,
            )
        except Exception as exc:  # InfluxDB may be down for another fault: replay nothing
            log.info("hostile: no good events to pass off (%s)", exc)
            return []
        return [str(r["raw"]).encode() for r in rows]

    def attack(self) -> None:
        """Connect with its certificate, send one attack within its budget, disconnect."""
        reg = self.stack.registry
        d = reg / "devices" / self.stack.site / HOSTILE
        tls = ClientTls(ca=reg / "ca" / "ca.crt", cert=d / "device.crt", key=d / "device.key")
        client = make_client(tls, HOSTILE, max_inflight=100)
        client.connect("127.0.0.1", self.stack.broker_port)
        client.loop_start()
        try:
            plan = self.messages()
            start = time.monotonic()
            last = None
            for i, (kind, topic, payload) in enumerate(plan):
                if i >= self.burst:
                    wait = start + (i - self.burst) / self.rate_per_s - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                last = client.publish(topic, payload, qos=1)
                self.sent[kind] += 1
            if last is not None:
                last.wait_for_publish(60)
            log.info(
                "hostile %s: %d messages in %.1f s (%s)",
                HOSTILE,
                len(plan),
                time.monotonic() - start,
                ", ".join(f"{k} {v}" for k, v in sorted(Counter(k for k, _, _ in plan).items())),
            )
        finally:
            client.disconnect()
            client.loop_stop()


def _heartbeat(site: str, **figures: int) -> bytes:
    beat = {
        "v": 1,
        "site": site,
        "device": HOSTILE,
        "ts": time.time_ns(),
        "boot_id": "hostile",
        "uptime_s": 1,
        "interval_s": 5,
        "outbox_depth": 0,
        "clock_synced": True,
        "last_seq": 0,
        "chain_head": GENESIS,
        **figures,
    }
    return json.dumps(beat).encode()


# the soak -----------------------------------------------------------------------------------


@dataclass
class Faults:
    """Random fault injection into a running stack; counts each kind it injected."""

    stack: Stack
    rng: random.Random
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    hostile: HostileUnit | None = None
    """Enrolled (enrol_hostile) and set: its attacks are one of the kinds."""

    def kinds(self) -> dict[str, Callable[[], None]]:
        kinds = {
            "broker-restart": self.broker_restart,
            "broker-sigkill": self.broker_kill,
            "collector-restart": self.collector_restart,
            "collector-sigkill": self.collector_kill,
            "influx-pause": self.influx_pause,
            "influx-stop": self.influx_stop,
        }
        if self.hostile is not None:
            kinds["hostile-unit"] = self.hostile_attack
        return kinds

    def hostile_attack(self) -> None:
        if self.hostile is None:
            raise RuntimeError("no hostile unit enrolled")
        log.info("fault: hostile unit %s attacks", HOSTILE)
        self.hostile.attack()

    def inject(self) -> str:
        with self.lock:
            name = self.rng.choice(sorted(self.kinds()))
        self.kinds()[name]()
        with self.lock:
            self.counts[name] += 1
        return name

    def _down(self, seconds: float) -> None:
        time.sleep(seconds)

    def broker_restart(self) -> None:
        m = self._part(self.stack.mosquitto)
        log.info("fault: broker restart (SIGTERM, start)")
        m.restart()

    def broker_kill(self) -> None:
        m = self._part(self.stack.mosquitto)
        down = self.rng.uniform(0, 3)
        log.info("fault: broker SIGKILL, down %.1f s", down)
        m.kill()
        self._down(down)
        self.stack.start_broker()

    def collector_restart(self) -> None:
        c = self._part(self.stack.collector)
        log.info("fault: collector restart (SIGTERM, start)")
        c.restart(timeout=60)

    def collector_kill(self) -> None:
        c = self._part(self.stack.collector)
        down = self.rng.uniform(0, 5)
        log.info("fault: collector SIGKILL, down %.1f s", down)
        c.kill()
        self._down(down)
        c.start(timeout=60)

    def influx_pause(self) -> None:
        i = self._part(self.stack.influx)
        down = self.rng.uniform(2, 20)
        log.info("fault: InfluxDB SIGSTOP for %.1f s", down)
        i.pause()
        try:
            self._down(down)
        finally:
            i.resume()

    def influx_stop(self) -> None:
        i = self._part(self.stack.influx)
        down = self.rng.uniform(5, 60)
        log.info("fault: InfluxDB stopped for %.1f s", down)
        i.stop()
        self._down(down)
        i.start()

    def unit_kill(self) -> None:
        with self.lock:
            device = self.rng.choice([u.device for u in self.stack.units])
            down = self.rng.uniform(0, 1.5)
        agent = self._part(self.stack.agents.get(device))
        log.info("fault: unit %s SIGKILL, down %.1f s", device, down)
        agent.kill()
        self._down(down)
        agent.online = False  # ready once it stores its boot event, broker or not
        agent.start(timeout=60)

    def _part(self, part: P | None) -> P:
        if part is None:
            raise RuntimeError("the stack is not started")
        return part


def idle(unit: UnitSpec, folder: Path) -> UnitSpec:
    """The unit with a scenario in which nothing happens at its pins (written into folder)."""
    path = folder / "idle.toml"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(IDLE)
    return dataclasses.replace(unit, scenario=path)


def faster(unit: UnitSpec, folder: Path, speed: float) -> UnitSpec:
    """The unit with its demo scenario played `speed` times faster (pulses keep their length)."""
    assert unit.scenario is not None
    if speed == 1:
        return unit
    plan = tomllib.loads(unit.scenario.read_text())
    plan["loop_s"] = plan.get("loop_s", 0) / speed
    for step in plan.get("step", []):
        step["at"] = step["at"] / speed
    path = folder / f"{unit.device}-x{speed:g}.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(plan))
    return dataclasses.replace(unit, scenario=path)


class UnitKiller(threading.Thread):
    """SIGKILLs a random unit every few seconds and starts it again, until stopped."""

    def __init__(self, faults: Faults, mean_s: float) -> None:
        super().__init__(name="unit-killer", daemon=True)
        self.faults = faults
        self.mean_s = mean_s
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(self.faults.rng.uniform(0.2, 2 * self.mean_s)):
                self.faults.unit_kill()
                with self.faults.lock:
                    self.faults.counts["unit-sigkill"] += 1
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def wait_settled(stack: Stack, timeout: float) -> None:
    """Until every outbox is empty and all is stored, twice in a row with nothing new."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if settled(stack):
            before = total(account(stack)).produced
            time.sleep(3)
            if settled(stack) and total(account(stack)).produced == before:
                return
        time.sleep(2)
    log.warning("soak: not settled after %.0f s; counting anyway", timeout)


def soak(
    root: Path,
    minutes: float,
    seed: int,
    *,
    speed: float = 3.0,
    unit_kill_every_s: float = 1.5,
    settle_s: float = 240,
    hostile: bool = True,
) -> tuple[Tally, Counter[str]]:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    units = tuple(faster(u, root / "scenarios", speed) for u in DEMO_UNITS)
    stack = Stack(root, units=units, heartbeat_s=5, broker_port=stable_port())
    faults = Faults(stack, random.Random(seed))
    if hostile:
        faults.hostile = HostileUnit(stack, random.Random(seed + 1))
    killer = UnitKiller(faults, unit_kill_every_s)
    try:
        log.info("soak: provisioning and starting the demo fleet in %s", root)
        stack.provision_registry()
        if hostile:
            enrol_hostile(stack)
        stack.configure_broker()
        stack.start_broker()
        start_influx(stack)
        stack.start_collector()
        for unit in stack.units:
            stack.start_agent(unit)
        if unit_kill_every_s > 0:
            killer.start()
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end and killer.error is None:
            time.sleep(faults.rng.uniform(3, 15))
            if time.monotonic() >= end:
                break
            faults.inject()
        killer.stop.set()
        if killer.is_alive():
            killer.join(120)
        if killer.error is not None:
            raise killer.error
        log.info("soak: faults stop; units restart on an idle scenario to drain their outbox")
        for unit in stack.units:
            stack.agents[unit.device].stop()
            stack.start_agent(idle(unit, root), online=False)
        wait_settled(stack, settle_s)
        records = account(stack)
        for r in records.values():
            t = r.tally()
            log.info("%s", t.line(f"soak {r.device}"))
            if t.lost:
                log.info("soak %s: missing seqs %s", r.device, r.missing()[:50])
        audit = stack.collector_cli("audit", "verify", "--site", stack.site)
        for line in audit.stdout.strip().splitlines()[-3:]:
            log.info("audit: %s", line)
        # Pictures a broker crash lost must have been asked for and sent again by now.
        missing = stack.collector_cli("evidence", "missing")
        log.info("audit: %s", (missing.stdout.strip().splitlines() or ["(no answer)"])[-1])
        if faults.hostile is not None and faults.hostile.sent:
            log.info("%s", hostile_summary(stack, faults.hostile))
        return total(records), faults.counts
    except StartError as exc:
        log.error("soak: a part did not come back: %s", exc)
        raise
    finally:
        killer.stop.set()
        stack.stop_all()


def hostile_summary(stack: Stack, hostile: HostileUnit) -> str:
    """What the hostile unit sent, and what the collector made of it (stored or refused)."""
    assert stack.influx is not None
    sent = ", ".join(f"{k} {v}" for k, v in sorted(hostile.sent.items()))
    stored = stored_events(stack, HOSTILE)
    refused = stack.influx.query(
        f'SELECT count("detail") FROM "integrity" WHERE "device" = \'{HOSTILE}\' GROUP BY "reason"',
        db=DATABASE,
    )
    reasons = ", ".join(f"{r['reason']} {r['count']}" for r in refused) or "none"
    return (
        f"hostile {HOSTILE}: sent {sum(hostile.sent.values())} ({sent}); its own events stored "
        f"{len({seq for seq, _ in stored})} of {len(hostile.own)} (points {len(stored)}); "
        f"integrity refusals: {reasons}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=Path("run/soak"))
    parser.add_argument(
        "--speed", type=float, default=3.0, help="play the demo scenarios this many times faster"
    )
    parser.add_argument(
        "--unit-kill-every",
        type=float,
        default=1.5,
        metavar="S",
        help="SIGKILL a random unit about every S seconds, besides the other faults (0: never)",
    )
    parser.add_argument(
        "--no-hostile",
        action="store_true",
        help="leave the hostile unit out of the fault kinds",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    log.info("soak: %.1f minutes, seed %d", args.minutes, seed)
    tally, counts = soak(
        args.dir.resolve(),
        args.minutes,
        seed,
        speed=args.speed,
        unit_kill_every_s=args.unit_kill_every,
        hostile=not args.no_hostile,
    )
    injected = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    log.info("soak: injected %d faults: %s", sum(counts.values()), injected)
    print(tally.line(), flush=True)
    return 0 if tally.lost == 0 and tally.dup == 0 and tally.produced > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
