"""The broker SIGKILLed and restarted five times while three units publish a burst: each event
is stored exactly once (lost tails come back through the collector's resend requests)."""

from __future__ import annotations

import functools
import time

import pytest

from devstack.stack import Stack
from tests.faults.fleet import (
    assert_exactly_once,
    connects,
    quiet,
    rng,
    settle,
    start_busy,
    start_site,
)
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KILLS = 5


def reconnected(stack: Stack, before: dict[str, int]) -> bool:
    return all(connects(a) > before[d] for d, a in stack.agents.items())


def test_broker_sigkilled_five_times_during_a_burst_stores_every_event_once(
    stack: Stack,
) -> None:
    rand = rng("broker-kills")
    start_site(stack)
    start_busy(stack)
    assert stack.mosquitto is not None and stack.collector is not None
    for kill in range(KILLS):
        # Each kill finds every unit connected and publishing.
        before = {d: connects(a) for d, a in stack.agents.items()}
        time.sleep(rand.uniform(0.3, 1.5))
        stack.mosquitto.kill()
        time.sleep(rand.uniform(0.0, 1.0))
        stack.start_broker()
        eventually(functools.partial(reconnected, stack, before), timeout=40)
        print(f"kill {kill + 1}: broker SIGKILLed and back; units reconnected")
    time.sleep(1.0)
    quiet(stack)
    t = assert_exactly_once(settle(stack, timeout=90))
    assert t.produced > 100  # a burst, not a trickle
    assert stack.collector.running
