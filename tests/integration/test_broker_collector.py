"""The collector's loop fed straight from its inbox (no broker), writing to a real InfluxDB:
batches big enough to have their signatures checked in the pool while the batch before is
stored are still stored in order, each message acknowledged once and only after the write
that holds it returned. Writes and acks are recorded on their way through (spies, not fakes):
the real writer writes, the real paho client is called."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from broker.collector.inbound import Inbound
from broker.collector.service import Collector, default_verify_workers
from broker.config import CollectorConfig, InfluxConfig
from broker.influx import InfluxWriter, Record, to_lines
from devstack.forwarder import V2WriteForwarder
from devstack.influx import InfluxDB
from protocol import topics
from protocol.models import EventBody, Kind
from protocol.signing import GENESIS, PublicKey, event_hash, sign
from protocol.topics import DeviceTopics

SITE = "gudang-3"
UNITS = ("pintu-1", "pintu-2")
KEYS = {d: ed25519.Ed25519PrivateKey.generate() for d in UNITS}
NOW = 1_700_000_000_000_000_000


class Keys:
    def keys(self, site: str, device: str) -> list[PublicKey]:
        key = KEYS.get(device) if site == SITE else None
        return [key.public_key()] if key else []


class Journal:
    """What the collector did, in order: writes (the event lines of each) and acks."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, what: str, detail: Any) -> None:
        with self.lock:
            self.entries.append((what, detail))


class RecordingWriter(InfluxWriter):
    """The collector's own writer, noting each write (its event lines) once it returned."""

    def __init__(self, config: InfluxConfig, journal: Journal) -> None:
        super().__init__(config, attempts=2)
        self.journal = journal

    def write(self, points: Sequence[Record] | bytes, count: int | None = None) -> None:
        super().write(points, count)
        body = points if isinstance(points, bytes) else to_lines(points)
        self.journal.add("write", body.decode().splitlines())


@pytest.fixture(scope="module")
def influx_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """InfluxDB 1.6 with 1.8's write API in front (devstack), database `jaga`."""
    db = InfluxDB(tmp_path_factory.mktemp("influx")).start()
    db.create_database("jaga")
    forwarder = V2WriteForwarder(db.url).start()
    try:
        yield forwarder.url
    finally:
        forwarder.stop()
        db.stop()


def body(device: str, seq: int, prev: str) -> EventBody:
    return EventBody(
        id=f"{device}-{seq}",
        site=SITE,
        device=device,
        sensor="pintu-utama",
        kind=Kind.DOOR,
        state="open" if seq % 2 else "closed",
        seq=seq,
        boot_id="boot-1",
        ts=NOW + seq,
        mono_ns=seq,
        clock_synced=True,
        prev=prev,
    )


def chain_of(device: str, n: int) -> list[bytes]:
    prev, out = GENESIS, []
    for seq in range(1, n + 1):
        event = sign(body(device, seq, prev), KEYS[device])
        prev = event_hash(event)
        out.append(event.to_json())
    return out


@pytest.fixture
def collector(tmp_path: Path, influx_url: str) -> Iterator[tuple[Collector, Journal]]:
    config = CollectorConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "registry_dir": str(tmp_path),
            "unit_rate_per_s": 1e9,
            "unit_burst": 1e9,
            "stats_interval_s": 3600,
            "influx": {"url": influx_url, "batch_max": 100},
        }
    )
    journal = Journal()
    writer = RecordingWriter(config.influx, journal)
    c = Collector(config, Keys(), writer=writer, verify_workers=2)
    ack, ack_many, publish = c.session.link.ack, c.session.link.ack_many, c.session.link.publish

    def recorded_ack(mid: int, qos: int) -> Any:
        journal.add("ack", mid)
        return ack(mid, qos)  # no broker here: paho answers "not connected"

    def recorded_ack_many(mids: Sequence[int]) -> Any:
        for mid in mids:
            journal.add("ack", mid)
        return ack_many(mids)

    def recorded_publish(topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Any:
        journal.add("publish", (topic, payload))
        return publish(topic, payload, qos=qos, retain=retain)

    c.session.link.ack = recorded_ack  # type: ignore[method-assign]
    c.session.link.ack_many = recorded_ack_many  # type: ignore[method-assign]
    c.session.link.publish = recorded_publish  # type: ignore[method-assign]
    try:
        yield c, journal
    finally:
        c.close()


def test_pipelined_batches_are_stored_in_order_and_acked_once_after_their_write(
    collector: tuple[Collector, Journal],
) -> None:
    c, journal = collector
    streams = {d: chain_of(d, 180) for d in UNITS}
    forged = sign(body("pintu-1", 121, "ab" * 32), ed25519.Ed25519PrivateKey.generate())
    messages: list[tuple[str, bytes]] = []
    for i in range(180):
        for d in UNITS:
            messages.append((DeviceTopics(SITE, d).event, streams[d][i]))
        if i == 120:  # a redelivery, and a forgery
            messages.append((DeviceTopics(SITE, "pintu-1").event, streams["pintu-1"][50]))
            messages.append((DeviceTopics(SITE, "pintu-1").event, forged.to_json()))
    for mid, (topic, payload) in enumerate(messages, start=1):
        c.inbox.put(Inbound.arrived(topic, payload, mid, 1, time.time_ns()))
    stop = threading.Event()
    loop = threading.Thread(target=c._loop, args=(stop,))
    loop.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and loop.is_alive():
        if sum(1 for what, _ in journal.entries if what == "ack") >= len(messages):
            break
        time.sleep(0.05)
    stop.set()
    loop.join(10)

    assert c.verifier is not None and c.verifier.pooled > 0  # the pool did check signatures
    writes: dict[int, int] = {}  # mid -> index of the write holding its event
    acked: dict[int, int] = {}
    stored: dict[str, list[int]] = {d: [] for d in UNITS}
    by_line: dict[str, list[int]] = {}
    for mid, (_, payload) in enumerate(messages, start=1):
        by_line.setdefault(payload.decode(), []).append(mid)
    for i, (what, detail) in enumerate(journal.entries):
        if what == "write":
            for line in detail:
                if not line.startswith("event,"):
                    continue
                device = line.split(",device=", 1)[1].split(",", 1)[0]
                stored[device].append(int(line.split(",seq=", 1)[1].split("i", 1)[0]))
                raw = line.split(',raw="', 1)[1].split('",seq=', 1)[0]
                for mid in by_line[raw.replace('\\"', '"').replace("\\\\", "\\")]:
                    writes.setdefault(mid, i)
        elif what == "ack":
            assert detail not in acked, f"message {detail} acknowledged twice"
            acked[detail] = i
    assert sorted(acked) == list(range(1, len(messages) + 1))
    assert stored == {d: list(range(1, 181)) for d in UNITS}  # once each, in order
    for mid, at in writes.items():
        assert acked[mid] > at, f"message {mid} acknowledged before its write"
    letters = [
        d[1] for what, d in journal.entries if what == "publish" and d[0] == topics.DEADLETTER
    ]
    assert len(letters) == 1 and b"bad-signature" in letters[0]
    assert (c.stats.duplicates, c.stats.rejected, c.stats.stored_events) == (1, 1, 360)
    assert c.chain.gaps() == []


def test_the_number_of_signature_workers_can_be_set_and_zero_turns_the_pool_off(
    tmp_path: Path,
) -> None:
    assert [default_verify_workers(n) for n in (1, 2, 3, 8, 64)] == [0, 1, 2, 4, 4]
    base = {"data_dir": str(tmp_path / "data"), "registry_dir": str(tmp_path)}
    for setting, expected in ((0, None), (3, 3)):
        config = CollectorConfig.model_validate({**base, "verify_workers": setting})
        c = Collector(config, Keys())
        try:
            assert (c.verifier.workers if c.verifier else None) == expected
        finally:
            c.close()
