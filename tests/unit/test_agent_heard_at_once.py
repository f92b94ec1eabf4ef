"""A message the unit's link hears (the site's arming, a command) wakes the main loop, so the
arming is applied before the next edge, not after it (#18: the unit's view of arming lagged
the collector's by up to a second, and an edge in that second was judged on the older one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.app import Agent
from agent.pins import make_pin_factory
from agent.sensors import Edge
from protocol import topics
from protocol.alerting import ArmingMode
from tests.unit.test_agent_arming_file import SITE, S, arming, config, shut


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    unit = Agent(config(tmp_path), make_pin_factory("mock"))
    now = unit.clock.mono_ns()
    for name, logic in unit._logic.items():  # as start() reads them, without opening the link
        unit._state[name], _ = logic.initial(False, now)
    yield unit
    shut(unit)


def test_the_arming_heard_wakes_the_loop_before_an_edge_that_follows_it(agent: Agent) -> None:
    message = mqtt.MQTTMessage(topic=topics.arming(SITE).encode())
    message.payload = arming(ArmingMode.ARMED).to_json()
    agent.publisher._on_message(agent.publisher._client, None, message)  # the link's thread
    opened = agent.clock.mono_ns() - S  # past its debounce by the loop's next turn
    agent.sensors.edges.put(Edge("pintu-utama", True, opened))
    # The loop, turn by turn as run() takes them: the wake comes first, then the door.
    first = agent.sensors.edges.get_nowait()
    assert first is None
    agent.step(first)
    agent._drain_inbox()
    assert agent.armed
    door = agent.sensors.edges.get_nowait()
    assert door is not None
    agent.step(door)
    assert agent.siren is not None and agent.siren.on  # judged on the arming heard before it
