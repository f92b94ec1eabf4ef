"""The collector's `stored` log lines: a unit's one event a line with its detail, several
events of a unit in one batch a line naming their seqs; what the benchmarks read back."""

from __future__ import annotations

import logging

import pytest

from broker.collector.inbound import Inbound
from broker.collector.settle import count, seqs_of, stored_in, stored_lines
from broker.collector.stats import CollectorStats
from broker.ingest import Accepted, Duplicate, Outcome
from protocol.models import Kind
from tests.unit.test_alerts_support import SITE, event


def test_one_event_of_a_unit_keeps_its_detail_and_several_share_a_line() -> None:
    batch = [
        event(Kind.DOOR, "open", 1, device="gudang-01", seq=5),
        event(Kind.MOTION, "motion", 2, device="pos-jaga-01", sensor="pir", seq=40),
        event(Kind.DOOR, "closed", 3, device="gudang-01", seq=6),
        event(Kind.DOOR, "open", 4, device="gudang-01", seq=7),
        event(Kind.DOOR, "closed", 5, device="gudang-01", seq=9),
    ]
    assert stored_lines(batch) == [
        f"stored {SITE}/gudang-01 seq=5..7,9 (4 events)",
        f"stored {SITE}/pos-jaga-01 seq=40 motion pir motion",
    ]


@pytest.mark.parametrize("seqs", [[1], [1, 2], [3, 5], [1, 2, 3, 7, 8, 10], list(range(100, 400))])
def test_the_seqs_a_line_names_read_back_as_they_were(seqs: list[int]) -> None:
    batch = [event(Kind.DOOR, "open", s, seq=s) for s in seqs]
    (line,) = stored_lines(batch)
    named = line.split(" seq=", 1)[1].split(" ", 1)[0]
    assert seqs_of(named) == seqs
    log = f"2026-12-07 01:00:00,123 INFO jaga.collector: {line}\n"
    assert stored_in(log) == [(SITE, "gudang-01", s) for s in seqs]


def test_count_logs_only_what_was_stored(caplog: pytest.LogCaptureFixture) -> None:
    stored = event(Kind.DOOR, "open", 1, seq=11)
    outcomes: list[tuple[Inbound, Outcome]] = [
        (Inbound("t", b"", 1, 1, 0), Accepted(SITE, "gudang-01", stored)),
        (Inbound("t", b"", 2, 1, 0), Duplicate(SITE, "gudang-01", 10)),
    ]
    stats = CollectorStats()
    with caplog.at_level(logging.INFO, logger="jaga.collector"):
        count(stats, outcomes)
    assert (stats.stored_events, stats.duplicates) == (1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        f"stored {SITE}/gudang-01 seq=11 door pintu-utama open"
    ]
