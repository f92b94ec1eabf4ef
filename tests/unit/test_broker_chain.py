"""ChainBook: what the collector knows of each unit's chain — dedupe, forks, breaks and gaps."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.chain import ChainBook, Gap, Verdict

GENESIS = "0" * 64
NOW = 1_700_000_000_000_000_000


def t(seq: int) -> int:
    """A unit's event time for seq: a millisecond apart, growing with seq as the outbox makes it."""
    return NOW + seq * 1_000_000


def h(seq: int, variant: str = "a") -> str:
    """A stand-in event hash for seq (variant b is another event with the same seq)."""
    return f"{variant}{seq:063x}"


@pytest.fixture
def book(tmp_path: Path) -> Iterator[ChainBook]:
    b = ChainBook(tmp_path / "collector" / "chain.sqlite3")
    yield b
    b.close()


def add(book: ChainBook, device: str, *seqs: int) -> None:
    """Check and commit a run of properly chained events."""
    for seq in seqs:
        prev = GENESIS if seq == 1 else h(seq - 1)
        assert book.check(device, seq, h(seq), prev, t(seq)).verdict is Verdict.NEW
    book.commit(NOW)


def test_a_first_event_is_new(book: ChainBook) -> None:
    assert book.check("d1", 1, h(1), GENESIS, t(1)).verdict is Verdict.NEW


def test_the_same_event_again_is_a_duplicate(book: ChainBook) -> None:
    add(book, "d1", 1, 2)
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.DUPLICATE
    assert book.check("d1", 1, h(1), GENESIS, t(1)).verdict is Verdict.DUPLICATE


def test_another_event_with_a_held_seq_is_a_fork(book: ChainBook) -> None:
    add(book, "d1", 1, 2)
    check = book.check("d1", 2, h(2, "b"), h(1), t(2))
    assert check.verdict is Verdict.FORK
    assert "seq 2" in check.detail


def test_an_event_whose_prev_is_not_the_held_predecessor_breaks_the_chain(
    book: ChainBook,
) -> None:
    add(book, "d1", 1, 2)
    check = book.check("d1", 3, h(3), h(2, "b"), t(3))
    assert check.verdict is Verdict.BROKEN_CHAIN
    assert "seq 3" in check.detail


def test_an_event_the_held_successor_does_not_chain_to_breaks_the_chain(book: ChainBook) -> None:
    add(book, "d1", 1)
    assert book.check("d1", 3, h(3), h(2), t(3)).verdict is Verdict.NEW
    book.commit(NOW)
    check = book.check("d1", 2, h(2, "b"), h(1), t(2))
    assert check.verdict is Verdict.BROKEN_CHAIN
    assert "seq 3" in check.detail
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.NEW


def test_a_broken_or_forked_event_is_not_staged(book: ChainBook) -> None:
    add(book, "d1", 1)
    book.check("d1", 2, h(2), h(1, "b"), t(2))
    book.commit(NOW)
    assert book.last_seq("d1") == 1
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.NEW


def test_devices_have_separate_chains(book: ChainBook) -> None:
    add(book, "d1", 1)
    assert book.check("d2", 1, h(1, "b"), GENESIS, t(1)).verdict is Verdict.NEW


def test_staged_events_are_visible_to_later_checks_in_the_same_batch(book: ChainBook) -> None:
    assert book.check("d1", 1, h(1), GENESIS, t(1)).verdict is Verdict.NEW
    assert book.check("d1", 1, h(1), GENESIS, t(1)).verdict is Verdict.DUPLICATE
    assert book.check("d1", 1, h(1, "b"), GENESIS, t(1)).verdict is Verdict.FORK
    assert book.check("d1", 2, h(2), h(1, "b"), t(2)).verdict is Verdict.BROKEN_CHAIN
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.NEW


def test_rollback_discards_staged_events(book: ChainBook) -> None:
    add(book, "d1", 1)
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.NEW
    book.rollback()
    assert book.commit(NOW) == []
    assert book.last_seq("d1") == 1
    # redelivered after the rollback it is new again, and another content is no fork
    assert book.check("d1", 2, h(2, "b"), h(1), t(2)).verdict is Verdict.NEW


def test_commit_stores_events_and_tracks_the_last_seq(book: ChainBook) -> None:
    assert book.last_seq("d1") == 0
    add(book, "d1", 1, 2, 3)
    assert book.last_seq("d1") == 3
    assert book.gaps() == []


def test_commit_opens_a_gap_when_seqs_are_skipped(book: ChainBook) -> None:
    add(book, "d1", 1, 2)
    book.check("d1", 6, h(6), h(5), t(6))
    assert book.commit(NOW + 5) == [("d1", 3, 5, "opened")]
    assert book.gaps() == [Gap("d1", 3, 5, NOW + 5)]
    assert book.gaps("d1") == book.gaps()
    assert book.gaps("d2") == []
    assert book.last_seq("d1") == 6


def test_a_unit_first_seen_mid_chain_opens_a_gap_from_one(book: ChainBook) -> None:
    book.check("d1", 4, h(4), h(3), t(4))
    assert book.commit(NOW) == [("d1", 1, 3, "opened")]


def test_the_missing_seq_arriving_later_closes_the_gap(book: ChainBook) -> None:
    add(book, "d1", 1)
    book.check("d1", 3, h(3), h(2), t(3))
    book.commit(NOW)
    assert book.gaps() == [Gap("d1", 2, 2, NOW)]
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.NEW
    assert book.commit(NOW + 1) == [("d1", 2, 2, "closed")]
    assert book.gaps() == []
    assert book.last_seq("d1") == 3


def test_the_middle_of_a_gap_arriving_splits_it_in_two(book: ChainBook) -> None:
    add(book, "d1", 1)
    book.check("d1", 7, h(7), h(6), t(7))
    book.commit(NOW)
    book.check("d1", 4, h(4), h(3), t(4))
    assert book.commit(NOW + 99) == [("d1", 4, 4, "closed")]
    assert book.gaps("d1") == [Gap("d1", 2, 3, NOW), Gap("d1", 5, 6, NOW)]


def test_the_ends_of_a_gap_arriving_shrink_it(book: ChainBook) -> None:
    add(book, "d1", 1)
    book.check("d1", 6, h(6), h(5), t(6))
    book.commit(NOW)
    book.check("d1", 2, h(2), h(1), t(2))
    book.check("d1", 5, h(5), h(4), t(5))
    changes = book.commit(NOW + 1)
    assert changes == [("d1", 2, 2, "closed"), ("d1", 5, 5, "closed")]
    assert book.gaps("d1") == [Gap("d1", 3, 4, NOW)]


def test_out_of_order_events_in_one_batch_open_no_gap(book: ChainBook) -> None:
    add(book, "d1", 1)
    book.check("d1", 3, h(3), h(2), t(3))
    book.check("d1", 2, h(2), h(1), t(2))
    assert book.commit(NOW) == []
    assert book.gaps() == []
    assert book.last_seq("d1") == 3


def test_a_second_skip_opens_a_second_gap(book: ChainBook) -> None:
    add(book, "d1", 1)
    book.check("d1", 3, h(3), h(2), t(3))
    book.check("d1", 6, h(6), h(5), t(6))
    assert book.commit(NOW) == [("d1", 2, 2, "opened"), ("d1", 4, 5, "opened")]
    assert book.gaps("d1") == [Gap("d1", 2, 2, NOW), Gap("d1", 4, 5, NOW)]


def test_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite3"
    first = ChainBook(path)
    add(first, "d1", 1, 2)
    first.check("d1", 5, h(5), h(4), t(5))
    first.commit(NOW)
    first.check("d1", 6, h(6), h(5), t(6))  # staged, never committed: lost with the process
    first.close()

    again = ChainBook(path)
    try:
        assert again.last_seq("d1") == 5
        assert again.gaps() == [Gap("d1", 3, 4, NOW)]
        assert again.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.DUPLICATE
        assert again.check("d1", 5, h(5, "b"), h(4), t(5)).verdict is Verdict.FORK
        assert again.check("d1", 6, h(6), h(5), t(6)).verdict is Verdict.NEW
        assert again.check("d1", 3, h(3), h(2), t(3)).verdict is Verdict.NEW
        assert again.commit(NOW + 1) == [("d1", 3, 3, "closed")]
        assert again.gaps() == [Gap("d1", 4, 4, NOW)]
    finally:
        again.close()


def test_commit_uses_the_time_it_is_given_even_zero(book: ChainBook) -> None:
    book.check("d1", 3, h(3), h(2), t(3))
    book.commit(0)
    assert book.gaps() == [Gap("d1", 1, 2, 0)]


def test_held_gives_the_hash_at_a_seq_committed_or_staged_and_stages_nothing(
    book: ChainBook,
) -> None:
    add(book, "d1", 1)
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.NEW  # staged, not committed
    assert book.held("d1", 1) == h(1) and book.held("d1", 2) == h(2)
    assert book.held("d1", 3) is None and book.held("d2", 1) is None
    book.rollback()
    assert book.held("d1", 2) is None
    assert book.commit(NOW) == []


def test_in_order_events_chain_to_the_last_committed_one_across_batches_and_restarts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chain.sqlite3"
    book = ChainBook(path)
    add(book, "d1", 1, 2)
    add(book, "d1", 3)
    assert book.check("d1", 4, h(4), h(3, "b"), t(4)).verdict is Verdict.BROKEN_CHAIN
    assert book.check("d1", 3, h(3), h(2), t(3)).verdict is Verdict.DUPLICATE
    assert book.check("d1", 2, h(2, "b"), h(1), t(2)).verdict is Verdict.FORK
    book.close()
    again = ChainBook(path)
    try:
        assert again.check("d1", 4, h(4), h(3, "b"), t(4)).verdict is Verdict.BROKEN_CHAIN
        assert again.check("d1", 3, h(3), h(2), t(3)).verdict is Verdict.DUPLICATE
        assert again.check("d1", 4, h(4), h(3), t(4)).verdict is Verdict.NEW
        again.commit(NOW)
        assert again.check("d1", 5, h(5), h(4, "b"), t(5)).verdict is Verdict.BROKEN_CHAIN
    finally:
        again.close()


def test_a_late_event_below_the_head_is_checked_against_what_is_stored(book: ChainBook) -> None:
    add(book, "d1", 1, 2)
    assert book.check("d1", 5, h(5), h(4), t(5)).verdict is Verdict.NEW
    assert book.commit(NOW) == [("d1", 3, 4, "opened")]
    assert book.check("d1", 4, h(4), h(3), t(4)).verdict is Verdict.NEW
    assert book.check("d1", 3, h(3), h(2, "b"), t(3)).verdict is Verdict.BROKEN_CHAIN
    assert book.commit(NOW) == [("d1", 4, 4, "closed")]
    assert book.check("d1", 5, h(5), h(4), t(5)).verdict is Verdict.DUPLICATE
    assert book.check("d1", 6, h(6), h(5, "b"), t(6)).verdict is Verdict.BROKEN_CHAIN


# -- event times grow with seq: no two events of a unit share InfluxDB's (series, time) --------


def test_an_event_no_later_than_its_predecessor_is_refused_and_not_staged(
    book: ChainBook,
) -> None:
    add(book, "d1", 1, 2)
    same = book.check("d1", 3, h(3), h(2), t(2))
    assert same.verdict is Verdict.TIME_ORDER
    assert same.detail == f"ts {t(2)} of seq 3 is not after ts {t(2)} of seq 2"
    assert book.check("d1", 3, h(3), h(2), t(2) - 1).verdict is Verdict.TIME_ORDER
    assert book.commit(NOW) == []
    assert book.last_seq("d1") == 2
    assert book.check("d1", 3, h(3), h(2), t(2) + 1).verdict is Verdict.NEW


def test_a_redelivery_is_a_duplicate_whatever_time_it_is_checked_with(book: ChainBook) -> None:
    add(book, "d1", 1, 2, 3)
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.DUPLICATE
    assert book.check("d1", 3, h(3), h(2), 0).verdict is Verdict.DUPLICATE
    assert book.check("d1", 2, h(2, "b"), h(1), t(2)).verdict is Verdict.FORK


def test_after_a_gap_an_event_must_be_later_than_the_units_last_one(book: ChainBook) -> None:
    add(book, "d1", 1, 2)
    assert book.check("d1", 6, h(6), h(5), t(2)).verdict is Verdict.TIME_ORDER
    assert book.check("d1", 6, h(6), h(5), t(6)).verdict is Verdict.NEW
    assert book.commit(NOW) == [("d1", 3, 5, "opened")]


def test_a_gap_fill_must_lie_between_its_neighbours_in_time(book: ChainBook) -> None:
    add(book, "d1", 1)
    book.check("d1", 5, h(5), h(4), t(5))
    book.commit(NOW)
    # Seq 3 touches neither held neighbour: the nearest held events bound it (1 and 5).
    for ts, side in [(t(1), "after"), (t(1) - 5, "after"), (t(5), "before"), (t(5) + 5, "before")]:
        check = book.check("d1", 3, h(3), h(2), ts)
        assert check.verdict is Verdict.TIME_ORDER, ts
        assert f"is not {side} ts" in check.detail
    assert book.check("d1", 3, h(3), h(2), t(3)).verdict is Verdict.NEW
    # Seq 4 is now bounded by the staged seq 3 below and the committed seq 5 above.
    assert book.check("d1", 4, h(4), h(3), t(3)).verdict is Verdict.TIME_ORDER
    assert book.check("d1", 4, h(4), h(3), t(5)).verdict is Verdict.TIME_ORDER
    assert book.check("d1", 4, h(4), h(3), t(4)).verdict is Verdict.NEW
    assert book.commit(NOW + 1) == [("d1", 3, 3, "closed"), ("d1", 4, 4, "closed")]
    assert book.check("d1", 2, h(2), h(1), t(3)).verdict is Verdict.TIME_ORDER
    assert book.check("d1", 2, h(2), h(1), t(2)).verdict is Verdict.NEW


def test_staged_events_bound_the_times_of_later_checks_in_the_same_batch(
    book: ChainBook,
) -> None:
    assert book.check("d1", 1, h(1), GENESIS, t(1)).verdict is Verdict.NEW
    assert book.check("d1", 2, h(2), h(1), t(1)).verdict is Verdict.TIME_ORDER
    assert book.check("d1", 4, h(4), h(3), t(4)).verdict is Verdict.NEW
    assert book.check("d1", 3, h(3), h(2), t(4)).verdict is Verdict.TIME_ORDER  # staged above
    assert book.check("d1", 3, h(3), h(2), t(1)).verdict is Verdict.TIME_ORDER  # staged below
    book.rollback()
    # Rolled back, nothing bounds them any more.
    assert book.check("d1", 3, h(3), h(2), t(1)).verdict is Verdict.NEW


def test_event_times_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite3"
    first = ChainBook(path)
    add(first, "d1", 1, 2)
    first.check("d1", 6, h(6), h(5), t(6))
    first.commit(NOW)
    first.close()
    again = ChainBook(path)
    try:
        assert again.check("d1", 7, h(7), h(6), t(6)).verdict is Verdict.TIME_ORDER
        assert again.check("d1", 8, h(8), h(7), t(6)).verdict is Verdict.TIME_ORDER
        assert again.check("d1", 3, h(3), h(2), t(6)).verdict is Verdict.TIME_ORDER
        assert again.check("d1", 5, h(5), h(4), t(2)).verdict is Verdict.TIME_ORDER
        assert again.check("d1", 3, h(3), h(2), t(3)).verdict is Verdict.NEW
        assert again.check("d1", 7, h(7), h(6), t(7)).verdict is Verdict.NEW
    finally:
        again.close()


def test_a_book_kept_before_event_times_is_upgraded_and_bounds_new_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chain.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """CREATE TABLE chain (device TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
        prev TEXT NOT NULL, PRIMARY KEY (device, seq)) WITHOUT ROWID;"""
    )
    old.executemany(
        "INSERT INTO chain VALUES (?,?,?,?)", [("d1", 1, h(1), GENESIS), ("d1", 2, h(2), h(1))]
    )
    old.commit()
    old.close()
    book = ChainBook(path)
    try:
        assert book.check("d1", 2, h(2), h(1), 0).verdict is Verdict.DUPLICATE
        # The time of seq 2 is unknown: it bounds nothing; seq 3's does, once stored.
        assert book.check("d1", 3, h(3), h(2), t(3)).verdict is Verdict.NEW
        book.commit(NOW)
        assert book.check("d1", 4, h(4), h(3), t(3)).verdict is Verdict.TIME_ORDER
    finally:
        book.close()
