"""Test helpers: an agent running in this process on MockFactory pins, and patient polling."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from agent.app import Agent
from agent.config import load_config
from agent.pins import make_pin_factory
from agent.simulator import PinDriver
from devstack.stack import Stack
from provisioning.est_server import EstServer, serve_in_thread

T = TypeVar("T")


def provision(root: Path, *args: str) -> str:
    """`jaga-provision ... --dir root` in this process; fails the test unless it exits 0."""
    from typer.testing import CliRunner

    from provisioning.cli import app

    result = CliRunner().invoke(app, [*args, "--dir", str(root)])
    assert result.exit_code == 0, result.output
    return result.output


@contextmanager
def served(server: EstServer) -> Iterator[EstServer]:
    """The enrolment endpoint answering in a thread for the block; shut and closed after it."""
    serve_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def eventually(probe: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Poll until probe() returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    assert value, f"condition not met within {timeout}s (last value: {value!r})"
    return value


class LiveAgent:
    """The real Agent on MockFactory pins, its main loop on a thread; drive pins by name."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.factory = make_pin_factory("mock")
        self.agent = Agent(self.config, self.factory)
        self.pins = PinDriver(self.config, self.factory)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.agent.run, args=(self._stop,), daemon=True)

    def __enter__(self) -> LiveAgent:
        self.pins.rest()
        self.agent.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, drain_s: float = 0.0) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10)
            self.agent.close(drain_s)

    def set(self, sensor: str, active: bool) -> None:
        self.pins.set_active(sensor, active)


def no_autosave(stack: Stack) -> None:
    """The broker keeps its queues in memory only, so a SIGKILL surely loses them (Mosquitto
    saves every autosave_interval seconds; the default 60 s could save them by chance)."""
    conf = stack.root / "broker" / "mosquitto.conf"
    text, n = re.subn(
        r"^autosave_interval \d+$", "autosave_interval 3600", conf.read_text(), flags=re.M
    )
    assert n == 1
    conf.write_text(text)


SAID = pytest.StashKey[list[str]]()
"""Lines `say` keeps in a pytest-xdist worker; tests/conftest.py prints them at the end."""


def say(request: pytest.FixtureRequest, line: str) -> None:
    """Print past pytest's capture, so the count shows in a plain `pytest -q` run (in a
    parallel run, a worker cannot print: the line shows in the summary at the end)."""
    if hasattr(request.config, "workerinput"):
        request.config.stash.setdefault(SAID, []).append(line)
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n{line}")
