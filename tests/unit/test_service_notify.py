"""The sd_notify protocol, the health checks and the health-gated watchdog, without systemd."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.config import AgentConfig, BrokerConfig, SensorConfig
from agent.pins import make_pin_factory
from devstack.ports import free_port
from service.health import DrainProgress, LinkState, LoopStall, ThreadAlive
from service.notify import Notifier
from service.stall import STALL_ENV, stall_hook
from service.units import agent_checks
from service.watchdog import UNHEALTHY, Watchdog, watchdog_period
from tests.support import eventually


class Listener:
    """What systemd's end of $NOTIFY_SOCKET sees: one string per datagram."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5.0)

    def next(self) -> str:
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(5.0)


@pytest.fixture
def socket_path() -> Iterator[str]:
    # Short, because AF_UNIX paths stop at 108 bytes and pytest's tmp_path can be long.
    folder = tempfile.mkdtemp(prefix="jaga-notify-")
    yield os.path.join(folder, "notify.sock")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


@pytest.fixture
def listener(socket_path: str) -> Iterator[Listener]:
    lis = Listener(socket_path)
    yield lis
    lis.sock.close()


# the protocol ------------------------------------------------------------------------------


def test_each_notification_is_one_datagram_of_lines_to_the_socket(
    socket_path: str, listener: Listener
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": socket_path})
    assert notifier.enabled
    assert notifier.ready("connected; outbox 0 waiting")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert listener.next() == "READY=1\nSTATUS=connected; outbox 0 waiting"
    assert listener.next() == "WATCHDOG=1"
    assert listener.next() == "STOPPING=1"
    notifier.close()


def test_a_status_stays_on_one_line_so_it_cannot_forge_other_assignments(
    socket_path: str, listener: Listener
) -> None:
    notifier = Notifier(socket_path)
    notifier.status("broker refused\nWATCHDOG=1")
    assert listener.next() == "STATUS=broker refused WATCHDOG=1"


def test_an_at_sign_names_a_socket_in_the_abstract_namespace() -> None:
    name = f"jaga-test-{uuid.uuid4().hex}"
    lis = Listener("\0" + name)
    try:
        assert Notifier.from_env({"NOTIFY_SOCKET": f"@{name}"}).ready()
        assert lis.next() == "READY=1"
    finally:
        lis.sock.close()


def test_outside_systemd_every_notification_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.watchdog() and not notifier.status("y")


def test_a_vanished_socket_is_reported_as_not_sent_not_raised(socket_path: str) -> None:
    assert not Notifier(socket_path).watchdog()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "400000"}, 0.4),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_the_watchdog_period_is_for_this_process_only(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_period(env) == expected


# health checks -----------------------------------------------------------------------------


def test_a_loop_is_stalled_once_its_heartbeat_is_older_than_the_stall_time() -> None:
    beat = 100.0
    check = LoopStall("main loop", lambda: beat, stall_s=5.0)
    assert check(104.9) is None
    assert check(105.0) == "main loop stalled for 5 s"
    beat = 106.0
    assert check(107.0) is None


def test_a_thread_is_alive_only_while_it_runs() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name="jaga-test-worker", daemon=True)
    check = ThreadAlive("jaga-test-worker", "test worker", start_s=10.0)
    # The watchdog's first checks come before run() starts the worker: starting, not dead.
    # (Was a bug: the collector said "UNHEALTHY ... spool replay thread is not running" at every
    # start under real systemd, seen in `make rehearse`.)
    assert check(100.0) is None
    assert check(109.9) is None
    worker.start()
    assert check(110.0) is None
    release.set()
    worker.join(10)
    assert check(110.5) == "test worker is not running"


def test_a_thread_that_never_starts_is_unhealthy_after_the_start_window() -> None:
    check = ThreadAlive("jaga-test-never", "never worker", start_s=10.0)
    assert check(50.0) is None
    assert check(60.0) == "never worker never started"


class FakeLink:
    def __init__(self) -> None:
        self.state = LinkState(connected_since=None, waiting=0, published=0, acked=0, refused=0)

    def set(self, **changes: Any) -> None:
        self.state = dataclasses.replace(self.state, **changes)


def test_a_connected_link_that_moves_nothing_while_messages_wait_is_stuck() -> None:
    link = FakeLink()
    check = DrainProgress(lambda: link.state, stall_s=40.0)
    link.set(connected_since=1.0, waiting=3)
    assert check(10.0) is None
    assert check(49.0) is None
    assert check(50.0) == (
        "outbox drain stuck: 3 messages waiting and none sent or acknowledged "
        "for 40 s while connected"
    )


def test_any_movement_restarts_the_stuck_clock() -> None:
    link = FakeLink()
    check = DrainProgress(lambda: link.state, stall_s=40.0)
    link.set(connected_since=1.0, waiting=3)
    assert check(10.0) is None
    link.set(published=1)
    assert check(45.0) is None
    link.set(acked=1)
    assert check(80.0) is None
    link.set(waiting=2)
    assert check(81.0) is None  # the check sees the movement here
    assert check(120.0) is None
    assert check(121.0) is not None


def test_an_offline_unit_is_healthy_however_long_its_messages_wait() -> None:
    link = FakeLink()
    check = DrainProgress(lambda: link.state, stall_s=40.0)
    link.set(connected_since=None, waiting=5)
    assert check(0.0) is None
    assert check(1000.0) is None


def test_a_connected_unit_with_nothing_to_send_is_healthy() -> None:
    link = FakeLink()
    check = DrainProgress(lambda: link.state, stall_s=40.0)
    link.set(connected_since=1.0, waiting=0)
    assert check(2.0) is None
    assert check(1000.0) is None


def test_rows_the_broker_refused_wait_for_a_reconnect_without_a_restart() -> None:
    link = FakeLink()
    check = DrainProgress(lambda: link.state, stall_s=40.0)
    link.set(connected_since=1.0, waiting=1, refused=4)  # refusals from earlier connections
    assert check(2.0) is None
    assert check(50.0) is not None  # ... do not excuse this connection
    link.set(refused=5)  # refused again on this connection: the broker is answering
    assert check(51.0) is None
    assert check(500.0) is None
    link.set(connected_since=600.0)  # a new connection starts counting afresh
    assert check(601.0) is None
    assert check(641.0) is not None


def test_the_checks_watch_a_real_agents_drain_thread(tmp_path: Path) -> None:
    config = AgentConfig(
        site="gudang-uji",
        device="pintu-uji",
        broker=BrokerConfig(host="127.0.0.1", port=free_port()),  # nobody there: offline
        sensors=[SensorConfig(name="pintu-utama", kind="door", pin=17)],
        data_dir=tmp_path,
        pin_factory="mock",
    )
    agent = Agent(config, make_pin_factory("mock"))
    agent.start()
    try:
        loop, drain, progress = agent_checks(agent, stall_s=5.0)
        now = agent.loop_heartbeat
        assert drain(now) is None
        assert progress(now) is None  # offline with events waiting is healthy
        assert loop(now + 1.0) is None and loop(now + 5.0) == "main loop stalled for 5 s"
        agent.publisher.stop()
        assert drain(now) == "outbox drain thread is not running"
    finally:
        agent.close()


# the watchdog -------------------------------------------------------------------------------


def test_pings_go_out_only_while_every_check_passes_and_status_says_why_not(
    socket_path: str, listener: Listener
) -> None:
    problem: list[str] = []
    dog = Watchdog(
        Notifier(socket_path),
        period_s=0.4,
        checks=[lambda now: problem[0] if problem else None, lambda now: None],
        describe=lambda: "connected; outbox 0 waiting",
    )
    assert dog.interval_s == 0.2
    assert dog.step(1.0)
    assert listener.pending() == ["STATUS=connected; outbox 0 waiting", "WATCHDOG=1"]
    assert dog.step(1.2)
    assert listener.pending() == ["WATCHDOG=1"]  # the status is sent again only when it changes
    problem.append("main loop stalled for 5 s")
    assert not dog.step(1.4)
    assert not dog.step(1.6)
    assert listener.pending() == [
        f"STATUS={UNHEALTHY}: main loop stalled for 5 s | connected; outbox 0 waiting"
    ]
    problem.clear()
    assert dog.step(1.8)
    assert listener.pending() == ["STATUS=connected; outbox 0 waiting", "WATCHDOG=1"]
    assert dog.pings == 3


def test_a_check_that_raises_counts_as_failed(socket_path: str, listener: Listener) -> None:
    def broken(now: float) -> str | None:
        raise OSError("database is locked")

    dog = Watchdog(Notifier(socket_path), period_s=1.0, checks=[broken], describe=lambda: "up")
    assert not dog.step(0.0)
    assert listener.pending() == [
        f"STATUS={UNHEALTHY}: health check failed: database is locked | up"
    ]


def test_without_a_watchdog_period_only_the_status_is_kept(
    socket_path: str, listener: Listener
) -> None:
    dog = Watchdog(Notifier(socket_path), period_s=None, checks=[], describe=lambda: "up")
    assert not dog.step(0.0)
    assert listener.pending() == ["STATUS=up"]


def test_the_watchdog_thread_keeps_pinging_until_stopped(
    socket_path: str, listener: Listener
) -> None:
    dog = Watchdog(Notifier(socket_path), period_s=0.1, checks=[], describe=lambda: "up").start()
    try:
        assert listener.next() == "STATUS=up"
        assert [listener.next() for _ in range(3)] == ["WATCHDOG=1"] * 3
    finally:
        dog.stop()
    listener.pending()
    assert not any(t.name == "watchdog" and t.is_alive() for t in threading.enumerate())


# the stall hook -----------------------------------------------------------------------------


def test_no_stall_hook_unless_the_variable_is_set() -> None:
    assert stall_hook({}) is None


def test_the_stall_hook_holds_the_caller_while_its_file_exists(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flag = tmp_path / "stall"
    hook = stall_hook({STALL_ENV: str(flag)})
    assert hook is not None
    hook()  # no file: returns at once
    flag.touch()
    caplog.set_level(logging.WARNING, logger="jaga.service.stall")
    caller = threading.Thread(target=hook, daemon=True)
    caller.start()
    eventually(lambda: "main loop held on purpose" in caplog.text)
    assert caller.is_alive()
    flag.unlink()
    caller.join(10)
    assert not caller.is_alive()
    assert "main loop released" in caplog.text
