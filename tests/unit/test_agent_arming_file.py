"""The last arming state a unit heard is kept durably (fsynced file and folder) before it acts
on it, so a unit restarted without a network still knows; only its own site's state counts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import arming_file
from agent.app import Agent
from agent.config import AgentConfig
from agent.domain.observation import Observation
from agent.pins import make_pin_factory
from kernel.files import Durability
from protocol import topics
from protocol.alerting import ArmingHow, ArmingMode, ArmingState, Bypass
from protocol.models import Kind

S = 1_000_000_000
SITE = "bangka-barat"


def arming(mode: ArmingMode, site: str = SITE) -> ArmingState:
    return ArmingState(
        site=site,
        state=mode,
        since=1_700_000_000 * S,
        by="operator:demo",
        how=ArmingHow.MQTT,
        exit_delay_s=0,
        entry_delay_s=30,
    )


def config(tmp_path: Path) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "site": SITE,
            "device": "gudang-01",
            "broker": {"host": "127.0.0.1", "port": 1},
            "sensors": [{"name": "pintu-utama", "kind": "door", "pin": 17}],
            "data_dir": str(tmp_path),
            "pin_factory": "mock",
            "siren": {"pin": 27},
        }
    )


def shut(unit: Agent) -> None:
    """Close what a unit opened; its link was never started (no broker here)."""
    unit.commands.close()
    if unit.siren is not None:
        unit.siren.close()
    unit.sensors.close()
    unit.outbox.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    unit = Agent(config(tmp_path), make_pin_factory("mock"))
    yield unit
    shut(unit)


def test_the_state_is_written_with_fsync_of_the_file_and_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[tuple[Path, Durability]] = []
    real = arming_file.atomic_write

    def spy(path: Path, data: bytes, *, durability: Durability) -> None:
        writes.append((path, durability))
        real(path, data, durability=durability)

    monkeypatch.setattr(arming_file, "atomic_write", spy)
    path = tmp_path / arming_file.NAME
    arming_file.save(path, arming(ArmingMode.ARMED))
    assert writes == [(path, Durability.FSYNC_FILE_AND_DIR)]
    assert arming_file.load(path) == arming(ArmingMode.ARMED)


def test_an_empty_unreadable_or_other_sites_message_is_not_heard(tmp_path: Path) -> None:
    assert arming_file.heard(b"", SITE) is None
    assert arming_file.heard(b"{not json", SITE) is None
    assert arming_file.heard(arming(ArmingMode.ARMED, "belitung").to_json(), SITE) is None
    assert arming_file.heard(arming(ArmingMode.ARMED).to_json(), SITE) == arming(ArmingMode.ARMED)
    (tmp_path / arming_file.NAME).write_bytes(b"garbage")
    assert arming_file.load(tmp_path / arming_file.NAME) is None
    assert arming_file.load(tmp_path / "absent.json") is None


def test_a_unit_restarted_offline_remembers_the_arming_it_heard(tmp_path: Path) -> None:
    first = Agent(config(tmp_path), make_pin_factory("mock"))
    try:
        first.inbox.put((topics.arming(SITE), arming(ArmingMode.ARMED).to_json()))
        first._drain_inbox()
        assert first.armed
    finally:
        shut(first)
    again = Agent(config(tmp_path), make_pin_factory("mock"))
    try:
        assert again.armed and again.arming == arming(ArmingMode.ARMED)
    finally:
        shut(again)


def test_a_disarm_heard_silences_the_siren_an_intrusion_started(agent: Agent) -> None:
    agent.inbox.put((topics.arming(SITE), arming(ArmingMode.ARMED).to_json()))
    agent._drain_inbox()
    siren = agent.siren
    assert siren is not None and not siren.on
    agent._store([Observation("pintu-utama", Kind.DOOR, "open", agent.clock.mono_ns())])
    assert siren.on
    agent.inbox.put((topics.arming(SITE), arming(ArmingMode.DISARMED).to_json()))
    agent._drain_inbox()
    assert not agent.armed and not siren.on


def test_a_bypassed_door_does_not_sound_the_units_siren(agent: Agent) -> None:
    """The bypass's window is wall-clock time, the unit's observations monotonic time since
    boot: was a bug, the unit compared the two and a bypassed door still sounded its siren."""
    now = time.time_ns()
    bypass = Bypass(
        device="gudang-01", sensor="pintu-utama", zone="default", by="demo", reason="rusak",
        since=now - 60 * S, until=now + 3600 * S,
    )  # fmt: skip
    armed = arming(ArmingMode.ARMED).model_copy(update={"entry_delay_s": 0})
    agent.inbox.put(
        (topics.arming(SITE), armed.model_copy(update={"bypassed": (bypass,)}).to_json())
    )
    agent._drain_inbox()
    siren = agent.siren
    assert siren is not None and agent.armed
    agent._store([Observation("pintu-utama", Kind.DOOR, "open", agent.clock.mono_ns())])
    assert not siren.on, "a bypassed door sounded the siren"
    agent.inbox.put((topics.arming(SITE), armed.to_json()))  # the bypass is lifted
    agent._drain_inbox()
    agent._store([Observation("pintu-utama", Kind.DOOR, "open", agent.clock.mono_ns())])
    assert siren.on
