"""The broker dies with SIGKILL holding acknowledged messages: the collector notices the
missing seqs from the units' heartbeats, asks for them again, and stores each exactly once."""

from __future__ import annotations

import time

import pytest

from devstack.stack import DATABASE, Stack
from tests.support import LiveAgent, eventually, no_autosave

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def stored(stack: Stack, device: str) -> list[int]:
    assert stack.influx is not None
    rows = stack.influx.query(
        f'SELECT "seq" FROM "event" WHERE "device" = \'{device}\'', db=DATABASE
    )
    return [int(r["seq"]) for r in rows]


def test_messages_lost_in_a_broker_crash_are_sent_again_and_stored_once(stack: Stack) -> None:
    no_autosave(stack)
    stack.start_servers()
    assert stack.mosquitto is not None and stack.collector is not None
    with LiveAgent(stack.unit_dir("pos-jaga-01") / "agent.toml") as unit:
        eventually(lambda: unit.agent.outbox.depth() == 0)
        # The collector is away: the broker queues for its session and acknowledges the unit.
        stack.collector.stop()
        for i in range(12):
            unit.set("pintu-pos", i % 2 == 0)
            time.sleep(0.08)
        eventually(lambda: unit.agent.outbox.depth() == 0)
        produced, _ = unit.agent.outbox.chain()
        before = len(stored(stack, "pos-jaga-01"))
        assert before < produced
        # SIGKILL: the queue was only in the broker's memory (it saves periodically).
        stack.mosquitto.kill()
        stack.start_broker()
        stack.collector.start()
        eventually(lambda: len(stored(stack, "pos-jaga-01")) == produced, timeout=40)
        assert "asking the unit to send them again" in stack.collector.log_tail(500)
    time.sleep(1)
    assert sorted(stored(stack, "pos-jaga-01")) == list(range(1, produced + 1))
