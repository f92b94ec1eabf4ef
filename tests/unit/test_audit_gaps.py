"""Which gaps `audit verify` may let pass: only those a resend can still close — the collector
never got those events, keeps asking for them, and the unit still keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.audit import CollectorBook, unclosable
from broker.chain import ChainBook, Verdict

DEVICE = "gudang-01"


def book_with(path: Path, seqs: list[int]) -> CollectorBook:
    """A chain book the way the collector writes it, holding these seqs of the unit."""
    chain = ChainBook(path)
    try:
        for seq in seqs:
            # Hashes chain only where both neighbours are held; the book checks just that.
            digest, prev = f"{seq:064x}", f"{seq - 1:064x}"
            assert chain.check(DEVICE, seq, digest, prev, ts=seq * 1000).verdict == Verdict.NEW
            chain.commit(now_ns=seq)
    finally:
        chain.close()
    return CollectorBook(path)


def test_a_gap_the_collector_still_asks_for_can_close(tmp_path: Path) -> None:
    book = book_with(tmp_path / "chain.sqlite3", [1, 4])
    assert book.open_gaps(DEVICE) == [(2, 3)]
    assert unclosable(DEVICE, 2, 3, book, newest=4) is None


def test_a_gap_half_filled_by_a_late_event_can_still_close(tmp_path: Path) -> None:
    book = book_with(tmp_path / "chain.sqlite3", [1, 6, 3])
    assert book.open_gaps(DEVICE) == [(2, 2), (4, 5)]
    assert unclosable(DEVICE, 4, 5, book, newest=6) is None


def test_events_the_collector_stored_but_influxdb_lacks_can_never_come_back(
    tmp_path: Path,
) -> None:
    book = book_with(tmp_path / "chain.sqlite3", [1, 2, 3])
    why = unclosable(DEVICE, 2, 2, book, newest=3)
    assert why is not None and "stored 1 of them" in why and "duplicate" in why


def test_a_gap_nobody_asks_for_cannot_close(tmp_path: Path) -> None:
    book = book_with(tmp_path / "chain.sqlite3", [1, 4])
    why = unclosable("gudang-02", 2, 3, book, newest=4)  # the book knows nothing of this unit
    assert why is not None and "no open gap" in why
    why = unclosable(DEVICE, 5, 6, book, newest=7)  # past the collector's last seq
    assert why is not None and "no open gap" in why


def test_a_gap_further_back_than_the_unit_keeps_cannot_close(tmp_path: Path) -> None:
    book = book_with(tmp_path / "chain.sqlite3", [1, 4])
    assert unclosable(DEVICE, 2, 3, book, newest=4, kept=3) is None  # 2 > 4 - 3: still kept
    why = unclosable(DEVICE, 2, 3, book, newest=25_000)
    assert why is not None and "latest 20000 events" in why


def test_without_the_collector_s_book_no_gap_is_shown_closable(tmp_path: Path) -> None:
    why = unclosable(DEVICE, 2, 3, None, newest=4)
    assert why is not None and "no chain book" in why
    with pytest.raises(Exception, match="does not exist"):
        CollectorBook(tmp_path / "absent.sqlite3")


def test_the_book_is_read_without_writing_it(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite3"
    book_with(path, [1, 4]).close()
    path.chmod(0o444)
    before = path.read_bytes()
    book = CollectorBook(path)
    assert book.last_seq(DEVICE) == 4 and book.stored(DEVICE, 1, 4) == 2
    book.close()
    assert path.read_bytes() == before
