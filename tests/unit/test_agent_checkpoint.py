"""The checkpoint schedule and what a checkpoint says of each input, driven with explicit
times (ns); and the real Agent on mock pins with a fake clock signing checkpoints on time."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from agent.app import Agent
from agent.clock import Clock
from agent.config import AgentConfig
from agent.domain.checkpoint import Schedule, ScheduleState, reading
from agent.domain.door import Door
from agent.domain.motion import Motion
from agent.domain.switch import patrol_button, tamper
from agent.pins import make_pin_factory
from agent.sensors import Edge
from agent.simulator import PinDriver
from protocol import models
from protocol.models import Event, Kind
from protocol.signing import event_hash

MS = 1_000_000
S = 1_000 * MS
MIN = 60 * S


# --- the schedule -----------------------------------------------------------------------------


def test_the_first_checkpoint_is_due_at_start() -> None:
    schedule = Schedule(5 * MIN)
    state = schedule.initial(7 * S)
    assert schedule.deadline(state) == 7 * S
    assert schedule.tick(state, 7 * S) == (ScheduleState(7 * S + 5 * MIN), True)


def test_a_checkpoint_is_due_every_interval_and_not_before() -> None:
    schedule = Schedule(5 * MIN)
    state, _ = schedule.tick(schedule.initial(0), 0)
    due_at = []
    now = 0
    while now <= 21 * MIN:
        state, due = schedule.tick(state, now)
        if due:
            due_at.append(now)
        now += 7 * S
    # the loop wakes every 7 s: each checkpoint at the first wake-up at or after its time
    assert due_at == [301 * S, 602 * S, 903 * S, 1204 * S]
    assert [d // (5 * MIN) for d in due_at] == [1, 2, 3, 4], "the period does not drift"


def test_a_unit_paused_past_several_intervals_signs_one_checkpoint_not_a_burst() -> None:
    schedule = Schedule(5 * MIN)
    state, _ = schedule.tick(schedule.initial(0), 0)
    state, due = schedule.tick(state, 23 * MIN)  # SIGSTOP for 23 minutes
    assert due
    assert schedule.deadline(state) == 28 * MIN
    assert schedule.tick(state, 23 * MIN + 1) == (state, False)


def test_a_schedule_without_a_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Schedule(0)


# --- what a checkpoint says of each input -----------------------------------------------------


def test_a_door_reads_closed_open_then_held_open() -> None:
    door = Door("pintu-utama", 50 * MS, 120 * S)
    state, _ = door.initial(False, 0)
    assert reading(door, state) == "closed"
    state, _ = door.edge(state, True, 1 * S)
    assert reading(door, state) == "closed", "an edge still bouncing is not yet a state"
    state, _ = door.tick(state, 1 * S + 50 * MS)
    assert reading(door, state) == "open"
    state, _ = door.tick(state, 200 * S)
    assert reading(door, state) == "held-open"


def test_a_pir_reads_motion_during_a_burst_and_still_after_it() -> None:
    pir = Motion("pir-gudang", 50 * MS, 30 * S)
    state, _ = pir.initial(False, 0)
    assert reading(pir, state) == "still"
    state, _ = pir.edge(state, True, 1 * S)
    state, _ = pir.tick(state, 2 * S)
    assert reading(pir, state) == "motion"
    state, _ = pir.edge(state, False, 3 * S)
    state, _ = pir.tick(state, 40 * S)
    assert reading(pir, state) == "still"


def test_tamper_reads_its_state_and_a_patrol_button_has_none() -> None:
    switch = tamper("casing", 50 * MS)
    assert reading(switch, switch.initial(True, 0)[0]) == "tampered"
    assert reading(switch, switch.initial(False, 0)[0]) == "normal"
    button = patrol_button("pos-jaga", 50 * MS)
    assert reading(button, button.initial(True, 0)[0]) is None


# --- the agent signs them on time -------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.mono = 1_000 * S

    def clock(self) -> Clock:
        return Clock(
            mono_ns=lambda: self.mono,
            wall_ns=lambda: 1_800_000_000 * S + self.mono,
            synced=lambda: True,
        )


def unit_config(tmp_path: Path, checkpoint_s: int) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "site": "bangka-barat",
            "device": "gudang-01",
            "broker": {"host": "127.0.0.1", "port": 1},
            "sensors": [
                {"name": "pintu-utama", "kind": "door", "pin": 17},
                {"name": "pir-gudang", "kind": "motion", "pin": 22},
                {"name": "casing", "kind": "tamper", "pin": 23},
                {"name": "pos-jaga", "kind": "patrol", "pin": 24},
            ],
            "data_dir": str(tmp_path),
            "pin_factory": "mock",
            "checkpoint_s": checkpoint_s,
        }
    )


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def unit(tmp_path: Path, fake: FakeTime) -> Iterator[Agent]:
    config = unit_config(tmp_path, 60)
    factory = make_pin_factory("mock")
    agent = Agent(config, factory, clock=fake.clock())
    PinDriver(config, factory).rest()
    agent.publisher.start = lambda: None  # type: ignore[method-assign]  # no broker here
    yield agent
    agent.commands.close()
    agent.sensors.close()
    agent.outbox.close()


def stored(agent: Agent) -> list[Event]:
    return [models.parse(Event, p.payload) for p in agent.outbox.pending(limit=10_000)]


def checkpoints(agent: Agent) -> list[Event]:
    return [e for e in stored(agent) if e.kind is Kind.CHECKPOINT]


def test_the_agent_signs_a_checkpoint_at_start_and_every_interval(
    unit: Agent, fake: FakeTime
) -> None:
    unit.start()
    first = checkpoints(unit)
    assert len(first) == 1
    fake.mono += 59 * S
    unit.step(None)
    assert len(checkpoints(unit)) == 1, "not before its interval"
    fake.mono += 1 * S
    unit.step(None)
    fake.mono += 60 * S
    unit.step(None)
    found = checkpoints(unit)
    assert [e.mono_ns - found[0].mono_ns for e in found] == [0, 60 * S, 120 * S]
    cp = found[0].checkpoint
    assert cp is not None
    assert found[0].sensor == "unit" and found[0].state == "unknown"  # no arming heard yet
    assert cp.interval_s == 60
    assert cp.sensors == {"pintu-utama": "closed", "pir-gudang": "still", "casing": "normal"}


def test_a_checkpoint_is_an_ordinary_link_of_the_chain_and_says_a_door_is_open(
    unit: Agent, fake: FakeTime
) -> None:
    unit.start()
    unit.step(Edge("pintu-utama", True, fake.mono))
    fake.mono += 1 * S
    unit.step(None)  # the debounce has passed: the door is open
    fake.mono += 60 * S
    unit.step(None)
    events = stored(unit)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for before, after in pairwise(events):
        assert after.prev == event_hash(before)
    last = checkpoints(unit)[-1]
    assert last.checkpoint is not None
    assert last.checkpoint.sensors["pintu-utama"] == "open"


def test_the_loop_sleeps_no_longer_than_the_next_checkpoint(unit: Agent, fake: FakeTime) -> None:
    unit.start()
    assert unit._deadline() == fake.mono + 60 * S
