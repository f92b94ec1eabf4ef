"""Shared fixtures: a provisioned registry (once per session) and a real stack per test.

`make test` runs the suite on several pytest-xdist workers (`--dist loadfile`: a module's
tests, and so its module-scoped fixtures, stay on one worker). Each worker is its own
session: its own `registry`, its own basetemp, its own slice of ports (devstack/ports.py).
Whatever else several workers could build at once in one place (a cache shared between
runs) goes under `exclusive()`.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from devstack.stack import DEMO_UNITS, Stack
from tests.support import SAID


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (made if missing) for the ``with`` block: one
    pytest-xdist worker at a time builds a cache shared between workers and runs (check for
    the finished cache inside the block, build it if missing, then leave)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA, site bangka-barat, the three demo units and the service identities."""
    root = tmp_path_factory.mktemp("site")
    Stack(root).provision_registry()
    return root / "registry"


@pytest.fixture
def stack(tmp_path: Path, registry: Path) -> Iterator[Stack]:
    """A fresh broker config, unit folders and collector folder; nothing started yet."""
    s = Stack(tmp_path, units=DEMO_UNITS, registry_dir=registry, heartbeat_s=2)
    s.configure_broker()
    try:
        yield s
    finally:
        s.stop_all()


# tests.support.say from pytest-xdist workers: the worker hands its lines over with the
# report of the test during which they were said; the controller prints them at the end.

_said: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    lines = item.config.stash.get(SAID, [])
    if lines:
        report.user_properties.extend(("said", line) for line in lines)
        lines.clear()
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not hasattr(report, "node"):  # a worker's own report: the controller prints
        return
    _said.extend(str(line) for name, line in report.user_properties if name == "said")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _said:
        terminalreporter.write_line(line)
