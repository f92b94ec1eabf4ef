"""A unit with its own valid certificate starts thousands of pictures and never finishes one.

Before, the collector held every picture chunk unacknowledged until its picture completed:
2,000 first chunks filled its MQTT Receive Maximum, Mosquitto delivered nothing more, and
another unit's door event was still not stored 200 s later. Over its budget, the same chunks
went to the disk backlog and were handed to the picture path again on every turn of the loop
(memory grew ~25 MB/s until the process died). Here the hostile unit keeps sending while
the good unit's door opens: the door event must be stored within seconds, the collector's
memory stays bounded, and the backlog drains.

One site serves the module: Mosquitto, InfluxDB, the collector (budget 200 messages/s, burst
2,400: the first test's pictures fit inside it, the second's overflow into the backlog) and
gudang-01 running in this process as the well-behaved unit; gudang-02's certificate is the
hostile party's.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.stack import DATABASE, DEMO_UNITS, Stack
from protocol import topics
from protocol.snapshot import SnapshotChunk, pack
from tests.faults.fleet import close, mqtt_client, start_site
from tests.support import LiveAgent, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SITE, GOOD, ROGUE = "bangka-barat", "gudang-01", "gudang-02"
ROGUE_TOPICS = topics.DeviceTopics(SITE, ROGUE)
RECEIVE_MAXIMUM = 2000


@dataclass
class Site:
    stack: Stack
    good: LiveAgent

    def stored_seqs(self) -> set[int]:
        assert self.stack.influx is not None
        rows = self.stack.influx.query(
            f'SELECT "seq" FROM "event" WHERE "device" = \'{GOOD}\'', db=DATABASE
        )
        return {int(r["seq"]) for r in rows}

    def open_door(self) -> int:
        """The good unit's door opens (and shuts); returns the seq of the opening."""
        before = self.good.agent.outbox.chain()[0]
        self.good.set("pintu-utama", True)
        seq: int | None = eventually(
            lambda: (
                self.good.agent.outbox.chain()[0]
                if self.good.agent.outbox.chain()[0] > before
                else None
            ),
            interval=0.01,
        )
        assert seq is not None
        time.sleep(0.2)
        self.good.set("pintu-utama", False)
        return seq

    def collector_rss_mb(self) -> float:
        assert self.stack.collector is not None
        pid = self.stack.collector.pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS for the collector")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("hostile-pictures")
    stack = Stack(root, units=DEMO_UNITS[:2], registry_dir=registry, heartbeat_s=2)
    stack.configure_broker()
    try:
        start_site(stack, {"unit_rate_per_s": 200.0, "unit_burst": 2400.0})
        with LiveAgent(stack.unit_dir(GOOD) / "agent.toml") as good:
            eventually(lambda: good.agent.publisher.stats.connected)
            yield Site(stack, good)
    finally:
        stack.stop_all()


def first_chunk(tag: str, i: int) -> tuple[str, bytes]:
    """The first of ten chunks of a 10,000-byte picture; the other nine never come."""
    event = f"{tag}-{i}"
    sha = hashlib.sha256(f"{tag}{i}".encode()).hexdigest()
    header = SnapshotChunk(
        event=event, sha256=sha, role="still", size=10_000, index=0, count=10, offset=0
    )
    return ROGUE_TOPICS.snapshot(event), pack(header, b"\xff" * 1000)


class Hostile:
    """gudang-02 sending first chunks of pictures it never finishes, until stopped."""

    def __init__(self, stack: Stack, tag: str, burst: int, then_per_s: float) -> None:
        self.client = mqtt_client(stack, ROGUE, connect=False)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", stack.broker_port)
        self.client.loop_start()
        eventually(self.client.is_connected, timeout=10)
        self.sent = 0
        self.tag, self.burst, self.then_per_s = tag, burst, then_per_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Hostile:
        last = None
        for _ in range(self.burst):
            last = self.client.publish(*first_chunk(self.tag, self.sent), qos=1)
            self.sent += 1
        assert last is not None
        last.wait_for_publish(60)  # every one is in the broker, queued for the collector
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(1 / self.then_per_s):
            self.client.publish(*first_chunk(self.tag, self.sent), qos=1)
            self.sent += 1

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        close(self.client)


def test_unfinished_pictures_within_budget_never_stop_another_units_door_event(
    site: Site,
) -> None:
    with Hostile(site.stack, "within", burst=RECEIVE_MAXIMUM + 400, then_per_s=40):
        seq = site.open_door()
        started = time.monotonic()
        eventually(lambda: seq in site.stored_seqs(), timeout=30)
        took = time.monotonic() - started
        print(f"door event stored {took:.2f} s after it was made, during the hostile burst")
    assert site.stack.collector is not None and site.stack.collector.running


def test_unfinished_pictures_over_budget_are_taken_from_the_backlog_once(site: Site) -> None:
    rss_before = site.collector_rss_mb()
    with Hostile(site.stack, "over", burst=6000, then_per_s=150) as hostile:
        seq = site.open_door()
        eventually(lambda: seq in site.stored_seqs(), timeout=30)
        time.sleep(10)  # the backlog is served meanwhile; re-fed items would pile up here
        rss = site.collector_rss_mb()
        sent = hostile.sent
    print(f"{sent} first chunks sent; collector RSS {rss_before:.0f} -> {rss:.0f} MB")
    assert site.stack.collector is not None and site.stack.collector.running
    assert rss - rss_before < 150, "the collector's memory grew with the hostile backlog"
    backlog = site.stack.root / "collector" / "data" / "backlog.sqlite3"
    eventually(lambda: _backlog_items(backlog) == 0, timeout=90)
    seq = site.open_door()  # and the collector still stores the good unit's events
    eventually(lambda: seq in site.stored_seqs(), timeout=30)


def _backlog_items(path: Path) -> int:
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM item").fetchone()[0])
    finally:
        db.close()
