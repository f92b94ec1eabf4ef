"""The unit's disk fills up while it produces. Its data folder is on a small tmpfs of its own
(mounted by the test, which needs root) and filler files take every free byte, so SQLite
meets ENOSPC exactly as on a full SD card.

One episode, shared by the tests below: the post unit (no camera) opens and shuts its door
five times a second; the broker is SIGKILLed so events wait in the outbox; the disk fills;
the unit gives back the reserve it keeps for alarms (agent/outbox.py) and goes on storing;
the disk fills again, reserve and all, so events are refused; the broker returns (the
waiting events go, and their PUBACKs meet a disk without room for the record); the fillers
are removed. Then the unit is restarted idle and everything it stored is counted against
InfluxDB.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.soak import UnitRecord, outbox_depth
from devstack.stack import DATABASE, DEMO_UNITS, Stack
from tests.faults.fleet import (
    assert_exactly_once,
    busy,
    idle,
    produced,
    settle,
    small_disk,
    start_site,
    write_agent_toml,
)
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FULL_LINE = "outbox disk is full"
RESERVE_LINE = "using the reserve kept for alarms"
REFUSED_LINE = "not stored"
DEVICE = "pos-jaga-01"


@dataclass
class Episode:
    stack: Stack
    full_from: int
    reserve_gone: int
    pid: int
    alive_while_full: bool
    refusing: bool
    """The door went on moving but no event was stored: reserve used up too."""
    flags: list[bool]
    """disk_full of every heartbeat from the disk filling to the end, oldest first."""
    drained_without_restart: bool
    unit_log: str
    records: dict[str, UnitRecord]


def fill(disk: Path, name: str) -> Path:
    """Take every free byte of disk with one file; returns it."""
    filler = disk / name
    # suppress outside the file: closing it flushes, and that too meets ENOSPC.
    with contextlib.suppress(OSError), filler.open("wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    return filler


def heartbeat_flags(stack: Stack, since_ns: int) -> list[bool]:
    """disk_full of each heartbeat the unit sent since since_ns, oldest first."""
    assert stack.influx is not None
    rows = stack.influx.query(
        f'SELECT "disk_full" FROM "heartbeat" WHERE "device" = \'{DEVICE}\' AND time >= {since_ns}',
        db=DATABASE,
    )
    return [bool(r["disk_full"]) for r in rows]


def events_between(stack: Stack, start_ns: int, end_ns: int) -> int:
    assert stack.influx is not None
    rows = stack.influx.query(
        f'SELECT count("seq") FROM "event" WHERE "device" = \'{DEVICE}\' '
        f"AND time >= {start_ns} AND time < {end_ns}",
        db=DATABASE,
    )
    return int(rows[0]["count"]) if rows else 0


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Episode]:
    root = tmp_path_factory.mktemp("disk-full")
    unit = next(u for u in DEMO_UNITS if u.device == DEVICE)
    stack = Stack(root, units=(unit,), registry_dir=registry, heartbeat_s=2)
    stack.configure_broker()
    with small_disk(root / "small-disk", mb=16) as disk:
        try:
            yield run_episode(stack, disk)
        finally:
            stack.stop_all()


def run_episode(stack: Stack, disk: Path) -> Episode:
    unit = stack.units[0]
    write_agent_toml(stack.unit_dir(DEVICE) / "agent.toml", data_dir=str(disk / "data"))
    start_site(stack)
    assert stack.mosquitto is not None
    agent = stack.start_agent(busy(unit))
    pid = agent.pid
    eventually(lambda: heartbeat_flags(stack, 0))
    # The broker dies: events pile up in the outbox. Then the disk fills.
    stack.mosquitto.kill()
    time.sleep(2.0)
    fillers = [fill(disk, "filler-1")]
    full_from = time.time_ns()
    eventually(lambda: RESERVE_LINE in agent.log_tail(100_000), timeout=30)
    time.sleep(1.0)  # alarms go on being stored, in the reserve
    fillers.append(fill(disk, "filler-2"))
    reserve_gone = time.time_ns()
    # Reserve and all: events are refused now (the outbox's last seq stands still). Not
    # always at once: room already inside SQLite's files (a WAL that a checkpoint reset is
    # written again from its start) takes events until it too is used up. CI once sampled
    # the stillness inside that stretch; wait for the unit's own word that it refuses.
    with contextlib.suppress(AssertionError):
        eventually(lambda: REFUSED_LINE in agent.log_tail(100_000), timeout=90)
    print(f"disk full: first event refused {(time.time_ns() - reserve_gone) / 1e9:.1f} s after")
    refusing_from = produced(stack)
    time.sleep(1.5)
    refusing = produced(stack) == refusing_from
    # The broker returns: what waited goes, and its PUBACKs meet a disk without room.
    stack.start_broker()
    eventually(lambda: agent.log_tail(100_000).count("connected to ") >= 2, timeout=30)
    eventually(lambda: any(heartbeat_flags(stack, full_from)), timeout=30)
    time.sleep(2.0)
    alive = agent.running and agent.pid == pid
    space_back = time.time_ns()
    for filler in fillers:
        filler.unlink()
    # Space is back. The same process, not restarted, stores and delivers again.
    eventually(lambda: heartbeat_flags(stack, space_back)[-1:] == [False], timeout=30)
    try:
        eventually(lambda: outbox_depth(stack, DEVICE) == 0, timeout=15)
        drained = True
    except AssertionError:
        drained = False
    unit_log = agent.log_tail(100_000)
    flags = heartbeat_flags(stack, full_from)
    agent.stop()
    stack.start_agent(idle(unit), online=False)
    records = settle(stack, timeout=60)
    return Episode(
        stack, full_from, reserve_gone, pid, alive, refusing, flags, drained, unit_log, records
    )


def test_a_full_disk_is_logged_once_and_clearly(episode: Episode) -> None:
    lines = [line for line in episode.unit_log.splitlines() if RESERVE_LINE in line]
    assert len(lines) == 1, f"one line per full disk, not one per event: {lines}"
    assert " ERROR " in lines[0] and FULL_LINE in lines[0]
    print("unit logged:", lines[0])


def test_the_unit_says_so_when_it_starts_dropping_events(episode: Episode) -> None:
    """Reserve and all used up: was a bug, the events went without a word."""
    assert episode.refusing, "the reserve lasted: nothing was dropped in this run"
    lines = [line for line in episode.unit_log.splitlines() if REFUSED_LINE in line]
    assert len(lines) == 1, lines


def test_the_heartbeat_raises_disk_full_and_lowers_it_when_space_is_back(
    episode: Episode,
) -> None:
    assert True in episode.flags
    assert episode.flags[-1] is False


def test_the_unit_keeps_running_on_a_full_disk_no_crash_loop(episode: Episode) -> None:
    assert episode.alive_while_full
    boots = episode.unit_log.count("system system boot")
    assert boots == 1, f"the unit restarted {boots - 1} times"


def test_the_link_survives_pubacks_on_a_full_disk_and_delivers_without_a_restart(
    episode: Episode,
) -> None:
    assert "Traceback" not in episode.unit_log, episode.unit_log[-2000:]
    assert episode.drained_without_restart


def test_alarms_are_still_stored_and_sent_while_the_disk_is_full(episode: Episode) -> None:
    # The door kept opening and shutting five times a second: into the reserve.
    assert events_between(episode.stack, episode.full_from, episode.reserve_gone) > 0


def test_every_event_the_unit_stored_is_delivered_once(episode: Episode) -> None:
    assert_exactly_once(episode.records)
