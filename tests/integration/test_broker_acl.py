"""The broker's policy, proved against real Mosquitto with certificates made by jaga-provision.

Mosquitto 2.0.11 answers a denied QoS 1 publish from an MQTT 5 client with PUBACK reason code
135 (not authorized), so publishing is judged by the PUBACK. It grants every SUBSCRIBE (SUBACK
0x01) and applies the read ACL when it delivers, so reading is judged by delivery: the collector
publishes a probe on a topic the filter matches, then a fence on a topic the subscriber may read;
the fence always arrives, and the probe arrives before it exactly when reading is allowed
(Mosquitto delivers one publisher's messages to a subscriber in order). No sleeps, no guesses.
"""

from __future__ import annotations

import os
import pwd
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devstack.mosquitto import Mosquitto
from devstack.ports import free_port
from provisioning import certs
from provisioning.ca import CertificateAuthority
from provisioning.files import write_private_key
from provisioning.registry import Registry
from tests.support import provision

pytestmark = pytest.mark.integration

WAIT_S = 10.0
"""Only a backstop for a broken broker; every outcome below arrives as an event."""

SITE1, SITE2 = "site1", "site2"
UNITS = {"unit-a": SITE1, "unit-b": SITE1, "unit-c": SITE2, "unit-d": SITE2}


@dataclass(frozen=True)
class Actor:
    """Who connects, and which unit counts as 'own', 'other unit' and 'other site' for them."""

    label: str
    cert: Path
    key: Path
    site: str
    own: str
    other_unit: str
    other_site: str
    other_site_unit: str


# -- the policy ---------------------------------------------------------------------------
# Topics per action, for an actor whose own unit is U in site S, with O another unit of S and
# X a unit of another site S2. The collector and operators have no unit: for them U, O, X are
# unit-a, unit-b (site1) and unit-c (site2).
ACTIONS: dict[str, tuple[str, str]] = {
    "publish own event": ("pub", "jaga/v1/{S}/{U}/event"),
    "publish other unit's event": ("pub", "jaga/v1/{S}/{O}/event"),
    "publish other site's event": ("pub", "jaga/v1/{S2}/{X}/event"),
    "publish arming": ("pub", "jaga/v1/{S}/arming"),
    "publish alert": ("pub", "jaga/v1/{S}/alert/probe-1"),
    "publish site cmd": ("pub", "jaga/v1/{S}/cmd/arm"),
    "publish other site's cmd": ("pub", "jaga/v1/{S2}/cmd/disarm"),
    "publish unit cmd": ("pub", "jaga/v1/{S}/{U}/cmd/snapshot"),
    "subscribe own cmd": ("sub", "jaga/v1/{S}/{U}/cmd/+"),
    "subscribe other unit's cmd": ("sub", "jaga/v1/{S}/{O}/cmd/+"),
    "subscribe site arming": ("sub", "jaga/v1/{S}/arming"),
    "subscribe other site arming": ("sub", "jaga/v1/{S2}/arming"),
    "subscribe jaga/v1/#": ("sub", "jaga/v1/#"),
}
IDENTITIES = ("unit-a", "unit-b", "unit-c", "collector", "operator")

Y, N = True, False
POLICY: dict[str, tuple[bool, ...]] = {
    #                                 unit-a unit-b unit-c collector operator
    "publish own event":             (Y,     Y,     Y,     N,        N),
    "publish other unit's event":    (N,     N,     N,     N,        N),
    "publish other site's event":    (N,     N,     N,     N,        N),
    "publish arming":                (N,     N,     N,     Y,        N),
    "publish alert":                 (N,     N,     N,     Y,        N),
    "publish site cmd":              (N,     N,     N,     N,        Y),
    "publish other site's cmd":      (N,     N,     N,     N,        N),
    "publish unit cmd":              (N,     N,     N,     Y,        Y),
    "subscribe own cmd":             (Y,     Y,     Y,     Y,        Y),
    "subscribe other unit's cmd":    (N,     N,     N,     Y,        Y),
    "subscribe site arming":         (Y,     Y,     Y,     Y,        Y),
    "subscribe other site arming":   (N,     N,     N,     Y,        N),
    "subscribe jaga/v1/#":           (N,     N,     N,     Y,        N),
}  # fmt: skip

# For "subscribe jaga/v1/#" the probe goes where no unit may read: another site's unit cmd.
HASH_PROBE = "jaga/v1/{S2}/{X}/cmd/probe"
CASES = [(who, action) for action in ACTIONS for who in IDENTITIES]


# -- the broker ---------------------------------------------------------------------------
@dataclass
class Site:
    """A provisioned registry and a running broker configured from it."""

    registry: Registry
    broker_dir: Path
    port: int
    mosquitto: Mosquitto

    def actor(self, label: str) -> Actor:
        reg = self.registry.root
        if label in UNITS:
            site = UNITS[label]
            others = {"unit-a": "unit-b", "unit-b": "unit-a", "unit-c": "unit-d"}
            other_site = SITE2 if site == SITE1 else SITE1
            folder = reg / "devices" / site / label
            return Actor(
                label,
                folder / "device.crt",
                folder / "device.key",
                site,
                label,
                others[label],
                other_site,
                "unit-c" if other_site == SITE2 else "unit-a",
            )
        role, name = {
            "collector": ("collector", "main"),
            "writer": ("collector", "writer"),
            "operator": ("operator", "alice"),
        }[label]
        ident = reg / "identities"
        cert, key = ident / f"{role}-{name}.crt", ident / f"{role}-{name}.key"
        return Actor(label, cert, key, SITE1, "unit-a", "unit-b", SITE2, "unit-c")

    def topic(self, template: str, actor: Actor) -> str:
        return template.format(
            S=actor.site, U=actor.own, O=actor.other_unit, S2=actor.other_site,
            X=actor.other_site_unit,
        )  # fmt: skip

    def configure(self) -> None:
        provision(
            self.registry.root,
            "broker-config",
            "--out", str(self.broker_dir),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--persistence-dir", str(self.broker_dir / "data"),
            "--host", "127.0.0.1",
            "--user", pwd.getpwuid(os.geteuid()).pw_name,
        )  # fmt: skip
        (self.broker_dir / "data").mkdir(exist_ok=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("acl")
    reg = root / "registry"
    provision(reg, "ca", "init", "--name", "Jaga ACL test CA")
    for site_id in (SITE1, SITE2):
        provision(
            reg, "site", "add", site_id, "--name", site_id, "--timezone", "Asia/Jakarta",
            "--broker-host", "127.0.0.1",
        )  # fmt: skip
    for n, (device, site_id) in enumerate(sorted(UNITS.items())):
        provision(
            reg, "device", "add", site_id, device, "--door", f"{17 + n}:pintu",
            "--pin-factory", "mock", "--generate-key",
        )  # fmt: skip
    for device in ("unit-revoked", "unit-expired"):
        provision(reg, "device", "add", SITE1, device, "--door", "17:pintu", "--generate-key")
    provision(reg, "identity", "add", "collector", "main")
    provision(reg, "identity", "add", "collector", "writer")
    provision(reg, "identity", "add", "operator", "alice", "--site", SITE1)
    provision(reg, "identity", "add", "operator", "bob", "--site", SITE1)
    _expire(Registry(reg), SITE1, "unit-expired")
    port = free_port()
    broker_dir = root / "broker"
    s = Site(Registry(reg), broker_dir, port, Mosquitto(broker_dir / "mosquitto.conf", port, root))
    s.configure()
    s.mosquitto.start(timeout=WAIT_S)
    try:
        yield s
    finally:
        s.mosquitto.stop()


def _expire(registry: Registry, site: str, device: str) -> None:
    """Replace the unit's certificate by one that expired yesterday (and its key)."""
    key = certs.new_key()
    now = datetime.now(UTC)
    validity = certs.Validity(now - timedelta(days=30), now - timedelta(days=1))
    CertificateAuthority(registry).issue_device(site, device, key.public_key(), validity=validity)
    key_path = registry.device_dir(site, device) / "device.key"
    write_private_key(key_path, certs.key_pem(key), overwrite=True)


# -- an MQTT 5 client that reports outcomes as events -------------------------------------
class Probe:
    """One mutual-TLS MQTT 5 connection; every broker answer lands in a threading.Event."""

    def __init__(self, site: Site, cert: Path | None, key: Path | None, ca: Path | None = None):
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        ca = ca or site.registry.ca_cert_path
        self.client.tls_set(ca_certs=str(ca), certfile=_opt(cert), keyfile=_opt(key))
        self.client.reconnect_delay_set(min_delay=60, max_delay=60)
        self.port = site.port
        self.answered = threading.Event()
        self.connect_rc: ReasonCode | None = None
        self.lock = threading.Lock()
        self.pubacks: dict[int, tuple[threading.Event, list[int]]] = {}
        self.received: list[bytes] = []
        self.fences: dict[bytes, threading.Event] = {}
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.subacks: dict[int, threading.Event] = {}

    # connection
    def connect(self) -> bool:
        """True when the broker accepted the connection (CONNACK success)."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except (ssl.SSLError, OSError):
            return False
        self.client.loop_start()
        assert self.answered.wait(WAIT_S), "the broker neither accepted nor refused"
        return self.connect_rc is not None and not self.connect_rc.is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connect_rc = rc
        self.answered.set()

    def _on_fail(self, _c: object, _u: object) -> None:
        self.answered.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, _rc: object, _p: object) -> None:
        self.answered.set()

    # publish: the PUBACK reason code says
    def publish(self, topic: str, payload: bytes = b"probe") -> int:
        with self.lock:
            info = self.client.publish(topic, payload, qos=1)
            done = threading.Event()
            self.pubacks[info.mid] = (done, [])
        assert done.wait(WAIT_S), f"no PUBACK for {topic}"
        return self.pubacks[info.mid][1][0]

    def _on_publish(self, _c: object, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self.lock:
            done, codes = self.pubacks[mid]
        codes.append(rc.value)
        done.set()

    # subscribe and receive
    def subscribe(self, *filters: str) -> None:
        with self.lock:
            rc, mid = self.client.subscribe([(f, 1) for f in filters])
            assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None
            done = self.subacks.setdefault(mid, threading.Event())
        assert done.wait(WAIT_S), f"no SUBACK for {filters}"

    def _on_subscribe(self, _c: object, _u: object, mid: int, _rcs: object, _p: object) -> None:
        with self.lock:
            self.subacks.setdefault(mid, threading.Event()).set()

    def expect_fence(self, token: bytes) -> threading.Event:
        with self.lock:
            return self.fences.setdefault(token, threading.Event())

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            payload = bytes(msg.payload)
            self.received.append(payload)
            if payload in self.fences:
                self.fences[payload].set()


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)


def connected(site: Site, actor: Actor) -> Probe:
    probe = Probe(site, actor.cert, actor.key)
    assert probe.connect(), f"{actor.label} was refused"
    return probe


def can_publish(site: Site, actor: Actor, topic: str) -> bool:
    probe = connected(site, actor)
    try:
        code = probe.publish(topic)
    finally:
        probe.close()
    assert code in (0, 16, 135), f"unexpected PUBACK reason code {code}"
    return code < 128


def can_read(site: Site, actor: Actor, filter_: str, probe_topic: str) -> bool:
    """Subscribe to filter_, have the collector publish a probe and then a fence; see which came."""
    subscriber = connected(site, actor)
    # A collector identity of its own: one certificate holds one connection at a time.
    writer = connected(site, site.actor("writer"))
    fence_topic = (
        site.topic("jaga/v1/{S}/{U}/cmd/fence", actor) if actor.label in UNITS
        else "jaga/v1/deadletter"
    )  # fmt: skip
    probe_token, fence_token = (f"{kind}-{uuid.uuid4().hex}".encode() for kind in ("p", "f"))
    try:
        subscriber.subscribe(filter_, fence_topic)
        fence_seen = subscriber.expect_fence(fence_token)
        assert writer.publish(probe_topic, probe_token) < 128
        assert writer.publish(fence_topic, fence_token) < 128
        assert fence_seen.wait(WAIT_S), f"{actor.label} never got the fence on {fence_topic}"
        with subscriber.lock:
            return probe_token in subscriber.received
    finally:
        subscriber.close()
        writer.close()


# -- the matrix ---------------------------------------------------------------------------
@pytest.mark.parametrize(("who", "action"), CASES, ids=[f"{w}:{a}" for w, a in CASES])
def test_acl_matrix(site: Site, who: str, action: str) -> None:
    actor = site.actor(who)
    kind, template = ACTIONS[action]
    topic = site.topic(template, actor)
    expected = POLICY[action][IDENTITIES.index(who)]
    if kind == "pub":
        allowed = can_publish(site, actor, topic)
    else:
        probe_topic = HASH_PROBE if topic == "jaga/v1/#" else template.replace("+", "probe")
        allowed = can_read(site, actor, topic, site.topic(probe_topic, actor))
    verdict = "allowed" if allowed else "denied"
    assert allowed == expected, f"{who} may {'' if expected else 'not '}{action}: {verdict}"


# -- refused connections ------------------------------------------------------------------
def test_client_without_certificate_is_refused(site: Site) -> None:
    assert not Probe(site, None, None).connect()


def test_certificate_from_another_ca_is_refused(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other-ca") / "registry"
    provision(other, "ca", "init", "--name", "Somebody else's CA")
    provision(other, "site", "add", SITE1, "--name", "x", "--timezone", "UTC", "--broker-host", "h")
    provision(other, "device", "add", SITE1, "unit-a", "--door", "17:pintu", "--generate-key")
    folder = other / "devices" / SITE1 / "unit-a"
    forged = Probe(site, folder / "device.crt", folder / "device.key")
    assert not forged.connect()


def test_expired_certificate_is_refused(site: Site) -> None:
    folder = site.registry.device_dir(SITE1, "unit-expired")
    assert not Probe(site, folder / "device.crt", folder / "device.key").connect()


def test_revoked_unit_is_refused_after_the_broker_reloads(site: Site) -> None:
    actor = site.actor("unit-a")
    folder = site.registry.device_dir(SITE1, "unit-revoked")
    before = Probe(site, folder / "device.crt", folder / "device.key")
    assert before.connect(), "the unit should get in before it is revoked"
    before.close()

    provision(site.registry.root, "device", "revoke", SITE1, "unit-revoked", "--reason", "retired")
    site.configure()
    reloads_before = site.mosquitto.log_path.read_text(errors="replace").count("Reloading config.")
    site.mosquitto.reload()

    # Mosquitto logs this line and then reloads in the same turn of its single-threaded loop,
    # so a connection made after the line appears meets the new CRL.
    wait_for_log(site.mosquitto, "Reloading config.", count=reloads_before + 1)
    after = Probe(site, folder / "device.crt", folder / "device.key")
    assert not after.connect(), "the revoked unit still gets in after SIGHUP"
    assert "user unit-revoked" not in (site.broker_dir / "acl").read_text()
    connected(site, actor).close()  # everyone else still gets in after the reload


def wait_for_log(process: Mosquitto, text: str, *, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while process.log_path.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged: {process.log_tail()}"
        time.sleep(0.01)


# -- who may hold which connection --------------------------------------------------------
class Session:
    """A raw MQTT 5 connection with a chosen client id and a persistent session."""

    def __init__(self, site: Site, cert: Path, key: Path, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        self.client.tls_set(
            ca_certs=str(site.registry.ca_cert_path), certfile=str(cert), keyfile=str(key)
        )
        self.client.reconnect_delay_set(min_delay=60, max_delay=60)
        self.connected = threading.Event()
        self.dropped = threading.Event()
        self.session_present: bool | None = None
        self.received: list[bytes] = []
        self.subscribed = threading.Event()
        self.sub_codes: list[ReasonCode] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.dropped.set()
        self.client.on_message = lambda _c, _u, m: self.received.append(bytes(m.payload))
        self.client.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", site.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(WAIT_S)

    def _on_connect(self, _c: object, _u: object, flags: Any, _rc: object, _p: object) -> None:
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_subscribe(self, _c: object, _u: object, _m: int, codes: Any, _p: object) -> None:
        self.sub_codes = list(codes)
        self.subscribed.set()

    def subscribe(self, filter_: str) -> list[ReasonCode]:
        self.subscribed.clear()
        self.client.subscribe(filter_, qos=1)
        assert self.subscribed.wait(WAIT_S)
        return self.sub_codes

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_unit_using_the_collectors_client_id_neither_kicks_it_nor_takes_its_session(
    site: Site,
) -> None:
    collector, unit = site.actor("collector"), site.actor("unit-a")
    kept = Session(site, collector.cert, collector.key, "jaga-collector-1")
    kept.subscribe("jaga/v1/#")
    kept.close()  # the broker keeps its session (and queues for it) while it is away
    writer = connected(site, unit)
    assert writer.publish("jaga/v1/site1/unit-a/event", b"queued-for-the-collector") == 0
    writer.close()
    thief = Session(site, unit.cert, unit.key, "jaga-collector-1")
    try:
        assert thief.session_present is False, "the unit resumed the collector's session"
        time.sleep(0.5)
        assert b"queued-for-the-collector" not in thief.received
    finally:
        thief.close()
    back = Session(site, collector.cert, collector.key, "jaga-collector-1")
    try:
        assert back.session_present is True, "the collector's session is gone"
        deadline = time.monotonic() + WAIT_S
        while b"queued-for-the-collector" not in back.received:
            assert time.monotonic() < deadline, "the collector's queued message went elsewhere"
            time.sleep(0.02)
        intruder = Session(site, unit.cert, unit.key, "jaga-collector-1")
        time.sleep(0.5)
        intruder.close()
        assert not back.dropped.is_set(), "a unit's certificate kicked the collector"
    finally:
        back.close()


@pytest.mark.parametrize("who", ["unit-b", "operator"])
def test_only_collectors_may_join_the_collectors_shared_subscription(site: Site, who: str) -> None:
    shared = "$share/jaga-collectors/jaga/v1/+/+/event"
    collector = site.actor("collector")
    member = Session(site, collector.cert, collector.key, "jaga-collector-1")
    outsider_actor = site.actor(who)
    outsider = Session(site, outsider_actor.cert, outsider_actor.key, f"x-{who}")
    writer = connected(site, site.actor("unit-a"))
    try:
        assert not member.subscribe(shared)[0].is_failure
        codes = outsider.subscribe(shared)
        assert codes[0].is_failure, f"{who} joined the collectors' shared subscription"
        sent = [f"event-{i}".encode() for i in range(20)]
        for payload in sent:
            assert writer.publish("jaga/v1/site1/unit-a/event", payload) == 0
        deadline = time.monotonic() + WAIT_S
        while not set(sent) <= set(member.received):
            assert time.monotonic() < deadline, (
                f"the collector got {len(set(sent) & set(member.received))} of 20"
            )
            time.sleep(0.02)
    finally:
        writer.close()
        outsider.close()
        member.client.unsubscribe(shared)
        member.close()


def test_a_revoked_operator_is_refused_after_the_broker_reloads(site: Site) -> None:
    ident = site.registry.root / "identities"
    cert, key = ident / "operator-bob.crt", ident / "operator-bob.key"
    before = Probe(site, cert, key)
    assert before.connect(), "bob should get in before he is revoked"
    before.close()
    kept_cert, kept_key = cert.read_bytes(), key.read_bytes()
    out = provision(site.registry.root, "identity", "revoke", "operator", "bob")
    assert "revoked operator 'bob'" in out
    site.configure()
    reloads = site.mosquitto.log_path.read_text(errors="replace").count("Reloading config.")
    site.mosquitto.reload()
    wait_for_log(site.mosquitto, "Reloading config.", count=reloads + 1)
    stolen = site.registry.root.parent / "stolen"
    stolen.mkdir(exist_ok=True)
    (stolen / "bob.crt").write_bytes(kept_cert)
    (stolen / "bob.key").write_bytes(kept_key)
    assert not Probe(site, stolen / "bob.crt", stolen / "bob.key").connect()
    assert "user operator:bob" not in (site.broker_dir / "acl").read_text()
