"""InfluxDB stopped for 20 s under the traffic of three units: the collector keeps taking and
acknowledging messages (the units' outboxes empty), spools them on its disk, says so in its
log and in its own `collector` figures, raises alerts all the same, and drains the spool when
InfluxDB is back; none lost, none doubled."""

from __future__ import annotations

import time

import pytest

from devstack.soak import account, outbox_depth, total
from devstack.stack import DATABASE, Stack
from protocol import topics
from protocol.models import Event, Kind
from protocol.signing import GENESIS
from tests.faults.fleet import (
    AlertWatch,
    assert_exactly_once,
    close,
    devices,
    mqtt_client,
    produced,
    quiet,
    settle,
    start_busy,
    start_site,
)
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

OUTAGE_S = 20.0


def forged() -> bytes:
    """An event that claims to come from gudang-01 (published by gudang-02)."""
    return Event(
        id="forged-1",
        site="bangka-barat",
        device="gudang-01",
        sensor="pintu-utama",
        kind=Kind.DOOR,
        state="open",
        seq=1,
        boot_id="forged",
        ts=time.time_ns(),
        mono_ns=1,
        clock_synced=True,
        prev=GENESIS,
        sig="A" * 86,
    ).to_json()


def spool_figures(stack: Stack) -> int:
    """The most batches the collector ever reported holding in its spool."""
    assert stack.influx is not None
    rows = stack.influx.query('SELECT max("spool_batches") FROM "collector"', db=DATABASE)
    return int(rows[0]["max"]) if rows else 0


def test_influx_stopped_for_20s_spools_and_drains_with_none_lost_or_doubled(
    stack: Stack,
) -> None:
    start_site(stack)
    start_busy(stack)
    assert stack.influx is not None and stack.collector is not None
    eventually(lambda: total(account(stack)).stored > 10)
    stack.influx.stop()
    down_at = time.monotonic()
    produced_at_stop = produced(stack)
    time.sleep(OUTAGE_S / 2)  # the units keep producing into a site without InfluxDB
    quiet(stack)
    # Still without InfluxDB, every unit's outbox empties: the broker acknowledges them because
    # the collector acknowledges the broker, having put the batches on its own disk.
    eventually(lambda: all(outbox_depth(stack, d) == 0 for d in devices(stack)), timeout=30)
    assert produced(stack) > produced_at_stop + 30
    log = stack.collector.log_tail(100_000)
    assert "InfluxDB unavailable" in log and "spooling" in log
    # The alert path does not wait for InfluxDB: a unit speaking for another is an integrity
    # alert, published at once.
    watch = AlertWatch(stack)
    try:
        rogue = mqtt_client(stack, "gudang-02")
        rogue.publish(topics.DeviceTopics(stack.site, "gudang-02").event, forged(), qos=1)
        alert = eventually(lambda: watch.raised("integrity", "gudang-02"), timeout=20)
        close(rogue)
    finally:
        watch.close()
    assert alert is not None and alert.severity == "critical"
    print("alert while InfluxDB was away:", alert.title)
    time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
    stack.influx.start()
    assert_exactly_once(settle(stack, timeout=60))
    collector = stack.collector
    eventually(lambda: "spool drained" in collector.log_tail(100_000), timeout=30)
    # The collector's own figures, written while InfluxDB was away, arrive with the spool.
    assert eventually(lambda: spool_figures(stack), timeout=30) > 0
    assert stack.collector.running
