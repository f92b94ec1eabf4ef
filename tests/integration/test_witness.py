"""An independent witness on the real site: Mosquitto (mutual TLS, the generated ACL), the
collector, InfluxDB, two units running here, and `jaga-witness run` as its own process.

The witness cosigns both units' chain heads with its own key (checked against its public key,
never against anything from the site CA); it refuses a forked and a rewound event signed with
the unit's real key, and the collector turns its reports into critical integrity alerts; its
identity reads its site's events and writes only its own topic; `jaga-witness check` names an
event deleted from InfluxDB.
"""

from __future__ import annotations

import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from paho.mqtt.enums import CallbackAPIVersion

from broker.cosignatures import StoredCosignature, cosignatures
from broker.influx_reader import InfluxReader
from devstack.stack import BIN, DATABASE, DEMO_UNITS, DEMO_WITNESS, Stack, jaga
from protocol import topics
from protocol.cosignature import verify_cosignature
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, event_hash, sign
from tests.faults.fleet import close, start_site
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration

SITE, OTHER_SITE, STRANGER = "bangka-barat", "lain", "gudang-09"
UNITS = ("gudang-01", "gudang-02")
NOT_AUTHORIZED = 0x87


@dataclass
class Site:
    stack: Stack
    agents: dict[str, LiveAgent]

    def query(self, q: str) -> list[dict[str, Any]]:
        assert self.stack.influx is not None
        return self.stack.influx.query(q, db=DATABASE)

    def reader(self) -> InfluxReader:
        assert self.stack.influx is not None
        return InfluxReader(self.stack.influx.url, DATABASE)

    def witness_key(self) -> ed25519.Ed25519PublicKey:
        key = load_pem_public_key((self.stack.root / "witness" / "witness.pub").read_bytes())
        assert isinstance(key, ed25519.Ed25519PublicKey)
        return key

    def witness_log(self, q: str) -> list[tuple[Any, ...]]:
        path = self.stack.root / "witness" / "data" / "witness.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return db.execute(q).fetchall()
        finally:
            db.close()

    def door(self, device: str) -> None:
        agent = self.agents[device]
        sensor = "pintu-utama" if device == "gudang-01" else "pintu-belakang"
        agent.set(sensor, True)
        time.sleep(0.3)
        agent.set(sensor, False)

    def stored_seqs(self, device: str) -> set[int]:
        rows = self.query(f'SELECT "seq" FROM "event" WHERE "device" = \'{device}\'')
        return {int(r["seq"]) for r in rows}

    def alert_log(self) -> str:
        assert self.stack.collector is not None
        return self.stack.collector.log_tail(1_000_000)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("witness")
    stack = Stack(root, units=DEMO_UNITS[:2], heartbeat_s=2)
    stack.provision_registry()
    reg = ("--dir", stack.registry)
    # A second site whose events the witness must not read.
    jaga("jaga-provision", *reg, "site", "add", OTHER_SITE, "--name", "Gudang lain",
         "--timezone", "Asia/Jakarta", "--broker-host", "127.0.0.1")  # fmt: skip
    jaga("jaga-provision", *reg, "device", "add", OTHER_SITE, STRANGER, "--door", "17:pintu",
         "--pin-factory", "mock", "--generate-key")  # fmt: skip
    stack.configure_broker()
    agents: dict[str, LiveAgent] = {}
    try:
        start_site(stack)
        stack.start_witness(cosign_every_s=1.0)
        for device in UNITS:
            agents[device] = LiveAgent(stack.unit_dir(device) / "agent.toml").__enter__()
        yield Site(stack, agents)
    finally:
        for agent in agents.values():
            agent.close()
        stack.stop_all()


def unit_key(stack: Stack, device: str, site: str = SITE) -> ec.EllipticCurvePrivateKey:
    path = stack.registry / "devices" / site / device / "device.key"
    key = load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def client(stack: Stack, cert: Path, key: Path) -> tuple[mqtt.Client, list[mqtt.MQTTMessage]]:
    got: list[mqtt.MQTTMessage] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5)  # fmt: skip
    c.tls_set(ca_certs=str(stack.registry / "ca" / "ca.crt"), certfile=str(cert),
              keyfile=str(key), tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip
    c.on_message = lambda _c, _u, m: got.append(m)
    c.connect("127.0.0.1", stack.broker_port)
    c.loop_start()
    eventually(c.is_connected, timeout=10)
    return c, got


def unit_client(stack: Stack, device: str, site: str = SITE) -> mqtt.Client:
    d = stack.registry / "devices" / site / device
    return client(stack, d / "device.crt", d / "device.key")[0]


def publish_codes(c: mqtt.Client, items: list[tuple[str, bytes]]) -> dict[str, int]:
    """Each topic's PUBACK reason code (0x87: not authorized)."""
    codes: dict[int, int] = {}
    done = threading.Event()

    def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        codes[mid] = int(reason.value)
        if len(codes) == len(items):
            done.set()

    c.on_publish = on_publish
    mids = {c.publish(t, p, qos=1).mid: t for t, p in items}
    assert done.wait(10), codes
    return {mids[m]: code for m, code in codes.items()}


def held_event(site: Site, device: str, seq: int) -> Event:
    """The unit's own event at seq, from its outbox."""
    path = site.agents[device].agent.outbox.path
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT payload FROM message WHERE seq=?", (seq,)).fetchone()
    finally:
        db.close()
    return Event.model_validate_json(row[0])


def twin(event: Event, **changes: Any) -> EventBody:
    """Another body at the same place in the chain: a different id and state."""
    data = event.model_dump(exclude={"sig"})
    data.update(id=f"{event.id}-x", state="open" if event.state != "open" else "closed")
    if event.kind.value != "door":
        data.update(kind=Kind.DOOR, sensor="pintu-belakang", snapshot_sha256=None)
    data.update(changes)
    return EventBody(**data)


# -- the tests -----------------------------------------------------------------------------------


def test_the_witness_cosigns_both_units_heads_and_the_collector_stores_them(site: Site) -> None:
    for device in UNITS:
        site.door(device)
    key = site.witness_key()
    for device in UNITS:
        last = eventually(lambda d=device: site.agents[d].agent.outbox.chain()[0])  # type: ignore[misc]

        def stored(d: str = device, n: int = last) -> bool:
            return n in site.stored_seqs(d)

        def cosigned(d: str = device, n: int = last) -> list[StoredCosignature]:
            return [c for c in cosignatures(site.reader(), SITE, d, 1, 10**9) if c.seq >= n]

        eventually(stored, timeout=30)
        for c in eventually(cosigned, timeout=30):
            checked = verify_cosignature(c.body, c.sig, key)
            assert (checked.witness, checked.site, checked.device) == (DEMO_WITNESS, SITE, device)
            rows = site.query(
                f'SELECT "hash" FROM "event" WHERE "device" = \'{device}\' AND "seq" = {c.seq}'
            )
            assert [r["hash"] for r in rows] == [checked.head]


def test_the_witness_reads_its_sites_events_and_writes_only_its_own_topic(site: Site) -> None:
    ident = site.stack.registry / "identities"
    w, got = client(
        site.stack, ident / f"witness-{DEMO_WITNESS}.crt", ident / f"witness-{DEMO_WITNESS}.key"
    )
    w.subscribe("#", qos=1)
    time.sleep(0.5)
    stranger = unit_client(site.stack, STRANGER, OTHER_SITE)
    stranger.publish(topics.DeviceTopics(OTHER_SITE, STRANGER).event, b"{}", qos=1)
    stranger.publish(topics.DeviceTopics(OTHER_SITE, STRANGER).heartbeat, b"{}", qos=1)
    site.door("gudang-01")
    eventually(lambda: any(m.topic.endswith("gudang-01/event") for m in got))
    time.sleep(1.0)
    seen = {m.topic for m in got}
    assert all(t.startswith(f"jaga/v1/{SITE}/") and t.endswith("/event") for t in seen), seen
    own = topics.witness(SITE, DEMO_WITNESS)
    codes = publish_codes(
        w,
        [
            (own, b"{}"),
            (topics.DeviceTopics(SITE, "gudang-01").event, b"{}"),
            (topics.witness(SITE, "someone-else"), b"{}"),
            (topics.witness(OTHER_SITE, DEMO_WITNESS), b"{}"),
            (topics.site_cmd(SITE, "arm"), b"{}"),
            (topics.alert(SITE, "x"), b""),
        ],
    )
    assert codes.pop(own) in (0, 0x10), codes  # 0x10: accepted, no matching subscriber
    assert set(codes.values()) == {NOT_AUTHORIZED}, codes
    close(w)
    close(stranger)


def _fork_alert(site: Site, reason: str, seq: int) -> bool:
    return f"Integrity: {reason} from {SITE}/gudang-02 (seq {seq})" in site.alert_log()


def test_a_forked_event_signed_by_the_unit_is_refused_and_raises_the_alert(site: Site) -> None:
    site.agents["gudang-02"].close(drain_s=2)  # its certificate is ours now (one per CN)
    time.sleep(1.0)
    ((seq, head),) = site.witness_log(
        "SELECT seq, hash FROM event WHERE device='gudang-02' ORDER BY seq DESC LIMIT 1"
    )
    assert event_hash(held_event(site, "gudang-02", seq)) == head
    forked = sign(twin(held_event(site, "gudang-02", seq)), unit_key(site.stack, "gudang-02"))
    rogue = unit_client(site.stack, "gudang-02")
    rogue.publish(topics.DeviceTopics(SITE, "gudang-02").event, forked.to_json(), qos=1)
    eventually(lambda: _fork_alert(site, "witness-fork", seq), timeout=30)
    forks = site.witness_log("SELECT kind, seq, seen, offered FROM fork")
    assert ("fork", seq, head, event_hash(forked)) in forks
    time.sleep(2.5)  # past cosign_every_s: the witness would have cosigned a new head by now
    heads = {c.head for c in cosignatures(site.reader(), SITE, "gudang-02", seq, seq)}
    assert event_hash(forked) not in heads and heads <= {head}
    rows = site.query('SELECT "detail" FROM "integrity" WHERE "reason" = \'witness-fork\'')
    assert rows and "refused a fork" in rows[0]["detail"]
    close(rogue)


def test_a_rewound_chain_is_refused_and_raises_the_alert(site: Site) -> None:
    ((seq,),) = site.witness_log("SELECT max(seq) FROM event WHERE device='gudang-02'")
    first = held_event(site, "gudang-02", 1)
    # The unit's key starts over from its first event: history below the witnessed head.
    rewound = sign(twin(first, prev=GENESIS), unit_key(site.stack, "gudang-02"))
    assert seq > 1
    rogue = unit_client(site.stack, "gudang-02")
    rogue.publish(topics.DeviceTopics(SITE, "gudang-02").event, rewound.to_json(), qos=1)
    eventually(lambda: _fork_alert(site, "witness-rewind", 1), timeout=30)
    forks = site.witness_log("SELECT kind, seq, seen, offered FROM fork WHERE kind='rewind'")
    assert forks == [("rewind", 1, event_hash(first), event_hash(rewound))]
    held = site.witness_log("SELECT max(seq) FROM event WHERE device='gudang-02'")
    assert held == [(seq,)]
    close(rogue)


def test_check_names_an_event_deleted_from_influxdb_and_exits_1(site: Site) -> None:
    assert site.stack.influx is not None
    config = site.stack.root / "witness" / "witness.toml"
    command = [str(BIN / "jaga-witness"), "check", "--config", str(config),
               "--influx", site.stack.influx.url]  # fmt: skip

    def witnessed_all_stored() -> bool:
        for (device,) in site.witness_log("SELECT DISTINCT device FROM event"):
            held = {s for (s,) in site.witness_log(
                f"SELECT seq FROM event WHERE device='{device}'")}  # fmt: skip
            if not held <= site.stored_seqs(device):
                return False
        return True

    eventually(witnessed_all_stored, timeout=30)
    clean = subprocess.run(command, capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert " 0 missing or changed" in clean.stdout
    victim = sorted(site.stored_seqs("gudang-01"))[1]
    row = site.query(
        f'SELECT "seq" FROM "event" WHERE "device" = \'gudang-01\' AND "seq" = {victim}'
    )[0]
    site.query(f'DELETE FROM "event" WHERE "device" = \'gudang-01\' AND time = {int(row["time"])}')
    assert victim not in site.stored_seqs("gudang-01")
    found = subprocess.run(command, capture_output=True, text=True, check=False)
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"missing: {SITE}/gudang-01 seq {victim}:" in found.stdout
    assert "1 missing or changed" in found.stdout
    assert "Traceback" not in found.stderr
