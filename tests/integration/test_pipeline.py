"""End to end through real Mosquitto (mutual TLS) and real InfluxDB: pins become rows."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devstack.stack import DATABASE, Stack
from protocol import topics
from protocol.models import DeadLetter, Event
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration


def events(stack: Stack, device: str) -> list[dict[str, Any]]:
    assert stack.influx is not None
    return stack.influx.query(
        f'SELECT * FROM "event" WHERE "device" = \'{device}\' ORDER BY time', db=DATABASE
    )


def door_rows(stack: Stack, device: str) -> list[dict[str, Any]]:
    return [r for r in events(stack, device) if r["kind"] == "door"]


def test_a_driven_pin_becomes_exactly_one_row_with_its_tags_fields_and_time(stack: Stack) -> None:
    stack.start_servers()
    with LiveAgent(stack.unit_dir("gudang-01") / "agent.toml") as unit:
        eventually(lambda: len(door_rows(stack, "gudang-01")) == 1)  # the door's state at boot
        before = time.time_ns()
        unit.set("pintu-utama", True)
        after = time.time_ns()
        rows = eventually(
            lambda: [r for r in door_rows(stack, "gudang-01") if r["state"] == "open"]
        )
        time.sleep(1.0)  # anything doubled would have arrived by now
        rows = [r for r in door_rows(stack, "gudang-01") if r["state"] == "open"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["site"], row["device"], row["sensor"], row["kind"]) == (
        "bangka-barat",
        "gudang-01",
        "pintu-utama",
        "door",
    )
    assert row["active"] == 1
    # The event's own time (the edge, not the debounce commit nor the write) is the row's time.
    assert before - 1_000_000 <= row["time"] <= after + 1_000_000  # 1 ms for reading two clocks
    stored = Event.model_validate_json(row["raw"])
    assert stored.seq == row["seq"] and stored.state == "open" and stored.ts == row["time"]


def test_events_made_while_the_broker_is_down_arrive_in_order_none_lost_none_doubled(
    stack: Stack,
) -> None:
    stack.start_servers()
    assert stack.mosquitto is not None
    with LiveAgent(stack.unit_dir("pos-jaga-01") / "agent.toml") as unit:
        eventually(lambda: unit.agent.publisher.stats.connected)
        eventually(lambda: unit.agent.outbox.depth() == 0)
        stack.mosquitto.stop()
        eventually(lambda: not unit.agent.publisher.stats.connected)
        for i in range(10):
            unit.set("pintu-pos", i % 2 == 0)
            time.sleep(0.15)  # longer than the 50 ms debounce: each edge is a real change
        eventually(lambda: unit.agent.outbox.depth() >= 10)
        last_seq, _ = unit.agent.outbox.chain()
        stack.start_broker()
        eventually(lambda: unit.agent.outbox.depth() == 0, timeout=30)
        rows = eventually(lambda: len(r := events(stack, "pos-jaga-01")) >= last_seq and r)
        time.sleep(1.0)
        rows = events(stack, "pos-jaga-01")
    seqs = [r["seq"] for r in rows]
    assert sorted(seqs) == list(range(1, last_seq + 1)), "every seq exactly once"
    assert seqs == sorted(seqs), "time order is seq order"
    doors = [r["state"] for r in rows if r["kind"] == "door"]
    assert doors[-10:] == ["open", "closed"] * 5


def test_garbage_goes_to_the_dead_letter_topic_and_the_next_good_event_is_stored(
    stack: Stack,
) -> None:
    stack.start_servers()
    letters: list[DeadLetter] = []
    operator = _client(stack, "operator-demo")
    operator.on_message = lambda _c, _u, m: letters.append(
        DeadLetter.model_validate_json(m.payload)
    )
    operator.subscribe(topics.DEADLETTER, qos=1)
    # A unit with broken firmware: garbage on its own event topic, with its own certificate.
    rogue = _client(stack, "gudang-01")
    event_topic = topics.DeviceTopics("bangka-barat", "gudang-01").event
    time.sleep(0.5)
    rogue.publish(event_topic, b"\xff\x00 not json", qos=1).wait_for_publish(5)
    rogue.publish(event_topic, json.dumps({"v": 1, "seq": "x"}).encode(), qos=1).wait_for_publish(5)
    rogue.disconnect()
    rogue.loop_stop()
    eventually(lambda: len(letters) == 2)
    assert all(letter.topic == event_topic for letter in letters)
    assert all(letter.reason.startswith("bad-payload") for letter in letters)
    with LiveAgent(stack.unit_dir("gudang-01") / "agent.toml") as unit:
        unit.set("pintu-utama", True)
        eventually(lambda: [r for r in door_rows(stack, "gudang-01") if r["state"] == "open"])
    operator.disconnect()
    operator.loop_stop()
    assert stack.collector is not None and stack.collector.running


def _client(stack: Stack, who: str) -> mqtt.Client:
    reg = stack.registry
    if who.startswith("operator-") or who.startswith("collector-"):
        cert, key = reg / "identities" / f"{who}.crt", reg / "identities" / f"{who}.key"
    else:
        d = reg / "devices" / stack.site / who
        cert, key = d / "device.crt", d / "device.key"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{who}", protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(reg / "ca" / "ca.crt"), certfile=str(cert), keyfile=str(key))
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    eventually(client.is_connected, timeout=10)
    return client
