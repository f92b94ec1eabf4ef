"""The collector's paho client (kernel.mqtt_stream.StreamClient) against real Mosquitto with TLS:
every message arrives whole and in order whatever the reads cut it into, a message with MQTT 5
properties takes paho's own path, and `ack_many` acknowledges exactly what it names — the rest
comes again when the kept session resumes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devstack.stack import Stack
from kernel.config import ClientTls
from kernel.link import Message
from kernel.mqtt import PahoLink, Session, make_client
from kernel.mqtt_stream import StreamClient
from protocol import topics
from tests.support import eventually

pytestmark = pytest.mark.integration

UNIT = "gudang-01"
SNAPSHOTS = "jaga/v1/{}/gudang-01/snapshot/+"


class Recorder:
    """A LinkHandler that keeps what arrives."""

    def __init__(self, link: PahoLink, filters: list[str]) -> None:
        self.link = link
        self.filters = filters
        self.messages: list[Message] = []
        self.subscribed = threading.Event()

    def on_connected(self, resumed: bool) -> None:
        self.link.subscribe(self.filters)

    def on_refused(self, reason: str) -> None:
        raise AssertionError(reason)

    def on_subscribed(self, failures: list[str]) -> None:
        assert not failures
        self.subscribed.set()

    def on_disconnected(self, reason: str) -> None:
        pass

    def on_message(self, msg: Message) -> None:
        self.messages.append(msg)


def collector_link(stack: Stack) -> PahoLink:
    ident = stack.registry / "identities"
    tls = ClientTls(
        ca=stack.registry / "ca" / "ca.crt",
        cert=ident / "collector-main.crt",
        key=ident / "collector-main.key",
    )
    client = make_client(tls, "jaga-collector-1", manual_ack=True, client_class=StreamClient)
    return PahoLink(client, Session("127.0.0.1", stack.broker_port, 30, 300, 5000))


def unit_tls(stack: Stack) -> ClientTls:
    folder: Path = stack.registry / "devices" / stack.site / UNIT
    return ClientTls(
        ca=stack.registry / "ca" / "ca.crt", cert=folder / "device.crt", key=folder / "device.key"
    )


@pytest.fixture
def broker(stack: Stack) -> Iterator[Stack]:
    stack.start_broker()
    yield stack


def test_messages_arrive_whole_and_in_order_and_only_the_acknowledged_are_forgotten(
    broker: Stack,
) -> None:
    unit = topics.DeviceTopics(broker.site, UNIT)
    link = collector_link(broker)
    rec = Recorder(link, [unit.event, SNAPSHOTS.format(broker.site)])
    link.start(rec)
    assert rec.subscribed.wait(10)

    publisher = make_client(unit_tls(broker), UNIT, max_inflight=1000)
    publisher.connect("127.0.0.1", broker.broker_port)
    publisher.loop_start()
    # Small and large payloads mixed: packets cut across reads and TLS records, and a 200 KB
    # one (under the broker's 256 KiB packet limit) needs many reads; one message with
    # properties goes through paho's own path.
    sent: list[tuple[str, bytes]] = []
    for i in range(3000):
        size = 200_000 if i % 997 == 0 else 40 + i % 700
        payload = f"{i:06d}".encode() + bytes(i % 251 for _ in range(size))
        topic = unit.snapshot(f"ev-{i}") if size > 1000 else unit.event
        props = None
        if i == 1500:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = ("why", "paho's own path")
        publisher.publish(topic, payload, qos=1, properties=props)
        sent.append((topic, payload))
    eventually(lambda: len(rec.messages) >= len(sent), timeout=60)
    assert [(m.topic, m.payload) for m in rec.messages] == sent
    assert all(m.qos == 1 and not m.retain for m in rec.messages)
    assert isinstance(link.client, StreamClient) and link.client.direct == len(sent) - 1

    # Acknowledge the first 2000 in one write; the last 1000 stay with the broker.
    link.ack_many([m.mid for m in rec.messages[:2000]])
    publisher.publish(unit.event, b"fence", qos=1).wait_for_publish(10)
    eventually(lambda: rec.messages[-1].payload == b"fence")
    link.close()
    publisher.disconnect()
    publisher.loop_stop()

    again = collector_link(broker)
    rec2 = Recorder(again, [unit.event, SNAPSHOTS.format(broker.site)])
    again.start(rec2)
    try:
        eventually(lambda: len(rec2.messages) >= 1001, timeout=30)
        assert [(m.topic, m.payload) for m in rec2.messages[:1000]] == sent[2000:]
        assert rec2.messages[1000].payload == b"fence"
    finally:
        again.close()
