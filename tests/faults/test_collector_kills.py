"""The collector SIGKILLed in the middle of a batch, and again at random instants of the flow:
its persistent session and manual acknowledgement bring back whatever it had not written."""

from __future__ import annotations

import time

import pytest

from devstack.soak import account, total
from devstack.stack import Stack
from tests.faults.fleet import (
    assert_exactly_once,
    produced,
    quiet,
    rng,
    settle,
    start_busy,
    start_site,
)
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MORE_KILLS = 2


def test_collector_sigkilled_mid_batch_and_restarted_loses_nothing(stack: Stack) -> None:
    rand = rng("collector-kills")
    start_site(stack)
    start_busy(stack)
    assert stack.influx is not None and stack.collector is not None
    eventually(lambda: total(account(stack)).stored > 10)

    # A batch that cannot finish: InfluxDB hangs (SIGSTOP) inside the collector's write, with
    # two seconds of the units' traffic taken from the broker and not yet acknowledged.
    stack.influx.pause()
    time.sleep(2.0)
    stack.collector.kill()
    stack.influx.resume()
    at_kill = produced(stack)
    stored_at_kill = total(account(stack)).stored
    assert stored_at_kill < at_kill, "the killed collector had nothing unwritten"
    print(f"collector SIGKILLed mid-batch: {at_kill} produced, {stored_at_kill} stored")
    stack.collector.start()
    assert "session resumed" in stack.collector.log_tail(200)

    for kill in range(MORE_KILLS):
        time.sleep(rand.uniform(0.3, 2.0))
        stack.collector.kill()
        time.sleep(rand.uniform(0.0, 1.0))
        stack.collector.start()
        print(f"kill {kill + 2}: collector SIGKILLed at a random instant and restarted")
    quiet(stack)
    t = assert_exactly_once(settle(stack, timeout=60))
    assert t.produced > at_kill
