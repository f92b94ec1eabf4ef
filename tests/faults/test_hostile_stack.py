"""Hostile input against the real site: oversized messages, replayed events, topics with
wildcards or `..`, commands without a proper identity, and one unit flooding the collector.

One site serves the whole module: Mosquitto, InfluxDB, the collector, and gudang-01 running
in this process (a LiveAgent) as the well-behaved unit. The hostile party holds a real
certificate: gudang-02's (a unit with broken or subverted firmware) or the operator's.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from devstack.soak import record
from devstack.stack import DATABASE, DEMO_UNITS, Stack
from protocol import topics
from protocol.commands import CommandResult, Resend, load_pem_key, sign_command
from protocol.models import DeadLetter
from protocol.signing import GENESIS
from provisioning.certs import Validity, issue_client, make_ca, new_key, service_name
from tests.faults.fleet import close, mqtt_client, start_site
from tests.support import LiveAgent, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SITE, GOOD, ROGUE = "bangka-barat", "gudang-01", "gudang-02"
GOOD_TOPICS = topics.DeviceTopics(SITE, GOOD)
ROGUE_TOPICS = topics.DeviceTopics(SITE, ROGUE)
NOT_AUTHORIZED = 0x87
FLOOD = 10_000


@dataclass
class Site:
    stack: Stack
    good: LiveAgent
    operator: mqtt.Client
    """Connected as operator:watch: reads dead letters and command results, sends commands."""
    letters: list[DeadLetter]
    results: list[CommandResult]

    def query(self, q: str) -> list[dict[str, Any]]:
        assert self.stack.influx is not None
        return self.stack.influx.query(q, db=DATABASE)

    def seqs(self, device: str) -> list[int]:
        rows = self.query(f'SELECT "seq" FROM "event" WHERE "device" = \'{device}\'')
        return [int(r["seq"]) for r in rows]

    def door(self) -> int:
        """The good unit's door opens and shuts; returns the seq of the opening, once both
        the opening and the shutting are stored (so the next door() starts from rest)."""
        before = self.good.agent.outbox.chain()[0]
        self.good.set("pintu-utama", True)
        time.sleep(0.3)  # well past the 50 ms debounce: two edges, two events
        self.good.set("pintu-utama", False)
        opened = eventually(lambda: self._find("open", before))
        closed = eventually(lambda: self._find("closed", opened or before))
        assert opened is not None and closed is not None
        eventually(lambda: {opened, closed} <= set(self.seqs(GOOD)), timeout=30)
        return opened

    def _find(self, state: str, after: int) -> int | None:
        """The first seq after `after` the unit stored for its door in `state`."""
        last = self.good.agent.outbox.chain()[0]
        return next((s for s in range(after + 1, last + 1) if self._door_state(s) == state), None)

    def _door_state(self, seq: int) -> str | None:
        db = sqlite3.connect(f"file:{self.good.agent.outbox.path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT payload FROM message WHERE seq=?", (seq,)).fetchone()
        finally:
            db.close()
        if row is None:
            return None
        event = json.loads(row[0])
        return str(event["state"]) if event["sensor"] == "pintu-utama" else None

    def collector_drops(self) -> int:
        assert self.stack.collector is not None
        return self.stack.collector.log_tail(1_000_000).count("disconnected from broker")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("hostile")
    stack = Stack(root, units=DEMO_UNITS[:2], registry_dir=registry, heartbeat_s=2)
    stack.configure_broker()
    letters: list[DeadLetter] = []
    results: list[CommandResult] = []
    try:
        start_site(stack)
        watcher = mqtt_client(stack, "operator-watch")
        watcher.on_message = lambda _c, _u, m: (
            letters.append(DeadLetter.model_validate_json(m.payload))
            if m.topic == topics.DEADLETTER
            else results.append(CommandResult.model_validate_json(m.payload))
        )
        watcher.subscribe([(topics.DEADLETTER, 1), (GOOD_TOPICS.cmd_result, 1)])
        with LiveAgent(stack.unit_dir(GOOD) / "agent.toml") as good:
            eventually(lambda: good.agent.publisher.stats.connected)
            yield Site(stack, good, watcher, letters, results)
        close(watcher)
    finally:
        stack.stop_all()


# -- raw MQTT 5, for what paho refuses to send -------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def raw_publish(stack: Stack, who: str, topic: str, payload: bytes = b"{}") -> str:
    """Publish once at QoS 1 over a hand-made MQTT 5 connection with who's certificate.

    Returns "puback <reason code>" or "disconnected" (the broker closed the connection).
    """
    d = stack.registry / "devices" / SITE / who
    ctx = ssl.create_default_context(cafile=str(stack.registry / "ca" / "ca.crt"))
    ctx.load_cert_chain(str(d / "device.crt"), str(d / "device.key"))
    with (
        socket.create_connection(("127.0.0.1", stack.broker_port), timeout=10) as tcp,
        ctx.wrap_socket(tcp, server_hostname="127.0.0.1") as sock,
    ):
        connect = _utf8("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 30) + b"\x00"
        sock.sendall(_packet(0x10, connect + _utf8(f"raw-{who}-{time.monotonic_ns()}")))
        connack = sock.recv(64)
        assert connack[:1] == b"\x20" and connack[3] == 0, connack
        body = _utf8(topic) + struct.pack("!H", 1) + b"\x00" + payload
        sock.sendall(_packet(0x32, body))
        try:
            answer = sock.recv(64)
        except (ConnectionError, ssl.SSLError):
            return "disconnected"
        if not answer or answer[0] == 0xE0:  # closed, or DISCONNECT
            return "disconnected"
        assert answer[0] == 0x40, answer
        code = answer[4] if answer[1] >= 3 else 0
        return f"puback {code}"


# -- the tests -----------------------------------------------------------------------------------


def test_an_oversized_message_costs_only_its_sender_the_connection(site: Site) -> None:
    stack = site.stack
    assert stack.mosquitto is not None and stack.collector is not None
    drops = site.collector_drops()
    rogue = mqtt_client(stack, ROGUE)
    gone = threading.Event()
    rogue.on_disconnect = lambda *_: gone.set()
    rogue.publish(ROGUE_TOPICS.event, b"x" * 300_000, qos=1)  # max_packet_size is 262144
    assert gone.wait(15), "the broker kept a client that sent an oversized packet"
    close(rogue)
    print("broker:", [ln for ln in stack.mosquitto.log_tail(50).splitlines() if "test-" in ln])
    site.door()  # the collector, untouched, still stores the good unit's events
    assert site.collector_drops() == drops
    assert site.good.agent.publisher.stats.connected


def test_replayed_old_events_are_stored_once_and_change_nothing(site: Site) -> None:
    site.door()
    raws = [
        str(r["raw"]).encode()
        for r in site.query(f'SELECT "raw" FROM "event" WHERE "device" = \'{GOOD}\'')
    ]
    # Someone who recorded the unit's traffic plays it back with the unit's own certificate.
    replayer = mqtt_client(site.stack, GOOD)
    for raw in raws:
        replayer.publish(GOOD_TOPICS.event, raw, qos=1)
    replayer.publish(GOOD_TOPICS.event, raws[0], qos=1).wait_for_publish(10)
    close(replayer)
    # And another unit passes the recorded events off as its own.
    rogue = mqtt_client(site.stack, ROGUE)
    rogue.publish(ROGUE_TOPICS.event, raws[-1], qos=1).wait_for_publish(10)
    close(rogue)
    integrity = eventually(
        lambda: site.query('SELECT "detail", "reason", "device" FROM "integrity"')
    )
    site.door()  # published after the replays: stored after them
    # Everything the unit produced is stored once (its late camera events included).
    r = eventually(lambda: ((r := record(site.stack, GOOD)).tally().lost == 0 and r) or None)
    assert r is not None and r.tally().dup == 0, r
    integrity = site.query('SELECT "detail", "reason", "device" FROM "integrity"')
    assert [(i["device"], i["reason"]) for i in integrity] == [(ROGUE, "identity-mismatch")]
    assert site.seqs(ROGUE) == []


@pytest.mark.parametrize(
    ("topic", "outcome"),
    [
        (f"jaga/v1/{SITE}/{ROGUE}/+", "disconnected"),
        (f"jaga/v1/{SITE}/{ROGUE}/#", "disconnected"),
        (f"jaga/v1/{SITE}/+/event", "disconnected"),
        (f"jaga/v1/{SITE}/{ROGUE}/../{GOOD}/event", f"puback {NOT_AUTHORIZED}"),
        (f"jaga/v1/{SITE}/../{SITE}/{GOOD}/event", f"puback {NOT_AUTHORIZED}"),
        (f"jaga/v1/{SITE}/{ROGUE}/event/..", f"puback {NOT_AUTHORIZED}"),
        (f"jaga/v1/{SITE}/{ROGUE}/évent", f"puback {NOT_AUTHORIZED}"),
        (f"jaga/v1/{SITE}/{GOOD}/event", f"puback {NOT_AUTHORIZED}"),
    ],
)
def test_topics_with_wildcards_or_dot_dot_are_refused_by_the_broker(
    site: Site, topic: str, outcome: str
) -> None:
    assert raw_publish(site.stack, ROGUE, topic) == outcome


@pytest.mark.parametrize("level", ["..", "."])
def test_a_dot_dot_level_the_acl_lets_through_is_dead_lettered(site: Site, level: str) -> None:
    # snapshot/+ is the unit's own: the broker lets `..` through as one opaque level.
    topic = f"jaga/v1/{SITE}/{ROGUE}/snapshot/{level}"
    assert raw_publish(site.stack, ROGUE, topic, b'{"not": "a chunk"}') == "puback 0"
    letter = eventually(lambda: next((x for x in site.letters if x.topic == topic), None))
    assert letter is not None
    print("dead letter:", letter.reason)
    assert site.stack.collector is not None and site.stack.collector.running


def _command(site: Site, name: str, payload: bytes) -> None:
    site.operator.publish(GOOD_TOPICS.cmd(name), payload, qos=1).wait_for_publish(10)


def _result_after(site: Site, count: int) -> CommandResult:
    result = eventually(lambda: site.results[count] if len(site.results) > count else None)
    assert result is not None
    return result


def identity(stack: Stack, who: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """Key and certificate of a registry identity (operator-demo, collector-main) or unit."""
    reg = stack.registry
    if who.startswith(("operator-", "collector-")):
        key, cert = reg / "identities" / f"{who}.key", reg / "identities" / f"{who}.crt"
    else:
        key, cert = (
            reg / "devices" / SITE / who / "device.key",
            reg / "devices" / SITE / who / "device.crt",
        )
    return load_pem_key(key.read_bytes()), cert.read_bytes()


def foreign_operator() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """An 'operator:demo' certificate from somebody else's CA."""
    ca_key, key = new_key(), new_key()
    ca = make_ca(ca_key, "Somebody else's CA", Validity.for_days(30), 1)
    cert = issue_client(
        subject=service_name("operator:demo"),
        public_key=key.public_key(),
        ca_cert=ca,
        ca_key=ca_key,
        serial=2,
        validity=Validity.for_days(30),
    )
    return key, cert.public_bytes(Encoding.PEM)


def resend(by: str = "operator:demo") -> Resend:
    return Resend(by=by, ts=time.time_ns(), first_seq=1, last_seq=1)


def signed(site: Site, cmd: Resend, who: str = "operator-demo") -> bytes:
    return sign_command(cmd, *identity(site.stack, who))


def tampered(site: Site) -> bytes:
    envelope = json.loads(signed(site, resend()))
    envelope["body"] = envelope["body"].replace('"last_seq":1', '"last_seq":2')
    return json.dumps(envelope).encode()


MISTAKES: dict[str, Callable[[Site], bytes]] = {
    "unsigned": lambda site: resend().to_json(),
    "garbage": lambda site: b"\xff not json",
    "empty": lambda site: b"",
    "by-another-operator": lambda site: signed(site, resend("operator:ghost")),
    "by-the-collector": lambda site: signed(site, resend("collector:main")),
    "signed-by-a-unit": lambda site: sign_command(resend(), *identity(site.stack, ROGUE)),
    "foreign-ca": lambda site: sign_command(resend(), *foreign_operator()),
    "tampered": tampered,
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_command_without_a_valid_operator_identity_is_refused_and_logged(
    site: Site, mistake: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jaga")
    count = len(site.results)
    _command(site, "resend", MISTAKES[mistake](site))
    result = _result_after(site, count)
    assert not result.ok and result.detail.startswith("refused"), result
    logged = eventually(lambda: [r for r in caplog.records if "command resend" in r.message])
    assert logged[0].levelno == logging.WARNING and "refused" in logged[0].message
    print(f"{mistake}: {logged[0].message}")


def test_a_command_signed_by_the_operator_it_names_is_carried_out(site: Site) -> None:
    count = len(site.results)
    _command(site, "resend", signed(site, resend()))
    result = _result_after(site, count)
    assert result.ok and "operator:demo" in result.detail, result


def test_an_unknown_command_is_refused_and_logged(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jaga")
    count = len(site.results)
    _command(site, "self-destruct", signed(site, resend()))
    result = _result_after(site, count)
    assert not result.ok and "unknown command" in result.detail
    assert eventually(lambda: [r for r in caplog.records if "self-destruct" in r.message])


def test_a_unit_cannot_even_publish_a_command_to_another_unit(site: Site) -> None:
    payload = sign_command(resend(), *identity(site.stack, "operator-demo"))
    outcome = raw_publish(site.stack, ROGUE, GOOD_TOPICS.cmd("resend"), payload)
    assert outcome == f"puback {NOT_AUTHORIZED}"


@dataclass
class Flood:
    good_seq: int
    handled_when_good_stored: int
    stored_in_the_end: int


def flood_stored(site: Site) -> int:
    rows = site.query(f'SELECT count("uptime_s") FROM "heartbeat" WHERE "device" = \'{ROGUE}\'')
    return int(rows[0]["count"]) if rows else 0


def handled_when_stored(site: Site, seq: int) -> int:
    """Flood heartbeats stored, counted right after the good unit's event `seq` is (an upper
    bound of how many were handled before it): one request, two statements, in order."""
    assert site.stack.influx is not None
    query = (
        f'SELECT "seq" FROM "event" WHERE "device" = \'{GOOD}\' AND "seq" = {seq}; '
        f'SELECT count("uptime_s") FROM "heartbeat" WHERE "device" = \'{ROGUE}\''
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = site.stack.influx.query(query, db=DATABASE)
        if any("seq" in r for r in rows):
            return next((int(r["count"]) for r in rows if "count" in r), 0)
    raise AssertionError(f"the good unit's event {seq} was not stored within 60 s")


def backlog_empty(site: Site) -> bool:
    path = site.stack.root / "collector" / "data" / "backlog.sqlite3"
    if not path.exists():
        return True
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM item").fetchone()[0]) == 0
    finally:
        db.close()


@pytest.fixture(scope="module")
def flood(site: Site) -> Flood:
    """gudang-02 sends FLOOD heartbeats as fast as the broker takes them (all QoS 1, all
    acknowledged, so all queued for the collector); then gudang-01's door opens. The collector
    is held (SIGSTOP) meanwhile, so the whole flood waits for it ahead of the door's event
    however fast it is beside the flooding client on a busy machine."""
    collector = site.stack.collector
    assert collector is not None
    collector.pause()
    rogue = mqtt_client(site.stack, ROGUE, connect=False)
    rogue.max_inflight_messages_set(1000)
    rogue.connect("127.0.0.1", site.stack.broker_port)
    rogue.loop_start()
    beat = {
        "v": 1,
        "site": SITE,
        "device": ROGUE,
        "boot_id": "flood",
        "interval_s": 1,
        "outbox_depth": 0,
        "clock_synced": True,
        "last_seq": 0,
        "chain_head": GENESIS,
    }
    last = None
    for i in range(FLOOD):
        body = {**beat, "ts": time.time_ns(), "uptime_s": i}
        last = rogue.publish(ROGUE_TOPICS.heartbeat, json.dumps(body), qos=1)
    assert last is not None
    last.wait_for_publish(60)
    close(rogue)
    # Every flood message is now queued in the broker for the collector, ahead of this event.
    before = site.good.agent.outbox.chain()[0]
    site.good.set("pintu-utama", True)
    seq = eventually(lambda: site._find("open", before), interval=0.01)
    assert seq is not None
    eventually(lambda: site.good.agent.outbox.depth() == 0)  # the broker holds it, behind
    collector.resume()
    handled = handled_when_stored(site, seq)
    site.good.set("pintu-utama", False)
    print(f"good event seq {seq} stored when {handled} of {FLOOD} flood messages were")
    eventually(lambda: backlog_empty(site) and flood_stored(site) >= handled, timeout=60)
    time.sleep(1.0)
    return Flood(seq, handled, flood_stored(site))


@pytest.mark.serial  # the flood must outrun the collector: no other test's load meanwhile
def test_a_flood_from_one_unit_does_not_hold_up_the_others(flood: Flood) -> None:
    """Bound: the good unit's event, published after the whole flood is queued in the broker
    for the collector, is stored while at least a quarter of the flood still waits. Counted
    in messages, not seconds; served first come, first served it would wait for all of it."""
    assert flood.handled_when_good_stored <= 0.75 * FLOOD


@pytest.mark.serial
def test_every_message_of_a_flooding_unit_is_stored_in_the_end(flood: Flood) -> None:
    """Deferred is not dropped: each flood heartbeat is its own InfluxDB point at the end."""
    print(f"{flood.stored_in_the_end} of {FLOOD} flood heartbeats stored in the end")
    assert flood.stored_in_the_end == FLOOD
