"""The network cut without a FIN: the broker hangs (SIGSTOP) with its sockets open, longer than
the unit's keepalive. The unit notices by itself, keeps storing, reconnects once the broker
answers again, and every event arrives once."""

from __future__ import annotations

import logging
import time

import pytest

from devstack.stack import Stack
from tests.faults.fleet import assert_exactly_once, settle, start_site, write_agent_toml
from tests.support import LiveAgent, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KEEPALIVE_S = 5  # the smallest agent.toml allows; the default is 15


def test_a_hung_broker_is_noticed_by_keepalive_and_nothing_is_lost(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    unit = stack.units[0]
    stack.units = (unit,)
    config = stack.unit_dir(unit.device) / "agent.toml"
    write_agent_toml(config, **{"broker.keepalive_s": KEEPALIVE_S})
    start_site(stack)
    assert stack.mosquitto is not None
    caplog.set_level(logging.INFO, logger="jaga")
    with LiveAgent(config) as live:
        stats = live.agent.publisher.stats
        eventually(lambda: stats.connected and live.agent.outbox.depth() == 0)
        connects = stats.connects
        stack.mosquitto.pause()
        cut_at = time.monotonic()
        for i in range(6):
            live.set("pintu-utama", i % 2 == 0)
            time.sleep(0.2)
        # No FIN, no RST: only the missing PINGRESP tells the unit the link is dead.
        eventually(lambda: not stats.connected, timeout=6 * KEEPALIVE_S)
        noticed_after = time.monotonic() - cut_at
        assert noticed_after >= KEEPALIVE_S
        for i in range(4):
            live.set("pintu-utama", i % 2 == 0)
            time.sleep(0.2)
        assert live.agent.outbox.depth() >= 10  # stored, waiting for the link
        stack.mosquitto.resume()
        eventually(lambda: stats.connects > connects, timeout=60)
        eventually(lambda: live.agent.outbox.depth() == 0, timeout=30)
        assert_exactly_once(settle(stack, timeout=30))
    print(f"the unit noticed the hung broker after {noticed_after:.1f} s")
    lost = [r.getMessage() for r in caplog.records if "disconnected" in r.getMessage()]
    assert lost, "the unit did not log that it lost the broker"
    print("unit logged:", lost[0])
