"""Lines to the journal carry their level as a syslog prefix; lines to a terminal do not."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.logs import connected_to_journal, setup_logging, syslog_priority


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _stream_id(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def test_under_systemd_each_line_starts_with_its_priority_and_leaves_the_time_to_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    out = tmp_path / "journal-stream"
    with out.open("w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", _stream_id(out))
        setup_logging("debug", stream)
        log = logging.getLogger("jaga.test")
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("UNHEALTHY")
        log.critical("c")
    assert out.read_text().splitlines() == [
        "<7>DEBUG jaga.test: d",
        "<6>INFO jaga.test: i",
        "<4>WARNING jaga.test: w",
        "<3>ERROR jaga.test: UNHEALTHY",
        "<2>CRITICAL jaga.test: c",
    ]


def test_a_terminal_or_another_pipe_gets_timestamps_and_no_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    other = tmp_path / "other"
    other.touch()
    monkeypatch.setenv("JOURNAL_STREAM", _stream_id(other))  # inherited, not our stderr
    out = tmp_path / "stderr"
    with out.open("w") as stream:
        setup_logging("info", stream)
        logging.getLogger("jaga.test").debug("hidden")
        logging.getLogger("jaga.test").error("shown")
    (line,) = out.read_text().splitlines()
    assert not line.startswith("<") and line.endswith(" ERROR jaga.test: shown")
    assert line[:4].isdigit()  # the year of the timestamp


@pytest.mark.parametrize("value", ["", "garbage", "1:", ":2", "12:34:56"])
def test_a_missing_or_malformed_journal_stream_means_no_journal(tmp_path: Path, value: str) -> None:
    with (tmp_path / "f").open("w") as stream:
        assert not connected_to_journal(stream, {"JOURNAL_STREAM": value})


def test_levels_between_the_named_ones_round_down() -> None:
    assert syslog_priority(logging.INFO + 5) == 6
    assert syslog_priority(logging.WARNING + 1) == 4
    assert syslog_priority(5) == 7
