"""`jaga-agent simulate` SIGKILLed at random instants while it produces, twenty times: the
SQLite outbox is never corrupt, every event it stored is delivered, and no seq is ever used
for two events (InfluxDB and the outbox agree event by event)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from devstack.soak import outbox_path, read_outbox
from devstack.stack import DATABASE, Stack
from tests.faults.fleet import assert_exactly_once, busy, idle, rng, settle, start_site

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KILLS = 20


def integrity(path: str) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def test_agent_sigkilled_20_times_keeps_its_outbox_whole_and_its_seqs_unique(
    stack: Stack,
) -> None:
    rand = rng("agent-kills")
    unit = stack.units[0]
    stack.units = (unit,)
    start_site(stack)
    path = outbox_path(stack, unit.device)
    seen: dict[int, str] = {}  # seq -> id, as first found in the outbox
    for kill in range(KILLS):
        # Ready as soon as it has stored an event: kills land before, during and after the
        # connection to the broker, in the middle of appends, publishes and acknowledgements.
        agent = stack.start_agent(busy(unit), online=False)
        time.sleep(rand.uniform(0.05, 0.8))
        agent.kill()
        check = integrity(str(path))
        assert check == "ok", f"kill {kill + 1}: outbox corrupt: {check}"
        last_seq, ids, depth = read_outbox(path)
        assert sorted(ids) == list(range(1, last_seq + 1)), f"kill {kill + 1}: seqs not 1..last"
        changed = {s: (seen[s], ids[s]) for s in seen if ids.get(s) != seen[s]}
        assert not changed, f"kill {kill + 1}: a seq now names another event: {changed}"
        seen.update(ids)
        print(f"kill {kill + 1}: last seq {last_seq}, {depth} waiting in the outbox")
    stack.start_agent(idle(unit), online=False)
    records = settle(stack, timeout=60)
    assert_exactly_once(records)
    # The collector never saw one seq with two contents (a reused seq is a fork to it).
    assert stack.influx is not None
    forks = stack.influx.query(
        f'SELECT count("seq") FROM "integrity" WHERE "device" = \'{unit.device}\'',
        db=DATABASE,
    )
    assert not forks, forks
    assert records[unit.device].last_seq > KILLS * 2
