"""InfluxDB away: the collector spools to disk and keeps acknowledging; nothing lost or doubled."""

from __future__ import annotations

import time

import pytest

from devstack.stack import DATABASE, Stack
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration


def stored_seqs(stack: Stack) -> list[int]:
    assert stack.influx is not None
    rows = stack.influx.query(
        'SELECT "seq" FROM "event" WHERE "device" = \'pos-jaga-01\'', db=DATABASE
    )
    return [int(r["seq"]) for r in rows]


def test_influx_down_spools_to_disk_and_drains_when_it_returns(stack: Stack) -> None:
    stack.start_servers()
    assert stack.influx is not None and stack.collector is not None
    spool = stack.root / "collector" / "data" / "spool.sqlite3"
    with LiveAgent(stack.unit_dir("pos-jaga-01") / "agent.toml") as unit:
        eventually(lambda: unit.agent.outbox.depth() == 0)
        stack.influx.stop()
        for i in range(20):
            unit.set("pintu-pos", i % 2 == 0)
            time.sleep(0.08)
        # The broker still acknowledges the unit, because the collector acknowledges the
        # broker: the events are on the collector's disk, not in anyone's memory.
        eventually(lambda: unit.agent.outbox.depth() == 0, timeout=30)
        log = stack.collector.log_tail(400)
        assert "InfluxDB unavailable" in log and "spooling" in log
        assert spool.exists()
        produced, _ = unit.agent.outbox.chain()
        stack.influx.start()
        # generous: InfluxDB's start and the replay share a busy machine with other tests
        eventually(lambda: len(stored_seqs(stack)) == produced, timeout=90)
    time.sleep(1)
    seqs = stored_seqs(stack)
    assert sorted(seqs) == list(range(1, produced + 1))
    eventually(lambda: "spool drained" in stack.collector.log_tail(400))
