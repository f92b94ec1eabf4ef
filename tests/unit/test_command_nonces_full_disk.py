"""A unit whose disk is full refuses a signed command it cannot remember, and lives on.

Found by tests/faults/test_disk_full.py: SQLite gave up the transaction itself on a full
disk, the book's ROLLBACK then failed with "no transaction is active", and the agent died
on a command. A full disk is made here as SQLite sees one: `max_page_count` reached.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.command_gate import CommandGate
from kernel.nonces import NonceBook, NonceBookUnavailable
from protocol.commands import CommandRefused, Resend, sign_command
from tests.unit.test_protocol_commands import CA, NOW, identity, resend

WINDOW_NS = 300 * 10**9


def fill(db: sqlite3.Connection) -> int:
    """Let the database grow no further than it is now; return the old limit."""
    (old,) = db.execute("PRAGMA max_page_count").fetchone()
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    return int(old)


def test_a_nonce_that_cannot_be_written_is_refused_and_the_book_goes_on(tmp_path: Path) -> None:
    book = NonceBook(tmp_path / "nonces.sqlite3", WINDOW_NS)
    old = fill(book._db)
    with pytest.raises(NonceBookUnavailable, match="full"):
        for n in range(10_000):  # the first page that must grow fails
            book.admit(f"nonce-{n:05d}-" + "x" * 200, NOW)
    assert not book._db.in_transaction
    book._db.execute(f"PRAGMA max_page_count = {old}")  # space is back
    assert book.admit("after", NOW) is True
    assert book.admit("after", NOW) is False  # and a replay is still refused
    book.close()


def test_the_unit_refuses_a_command_on_a_full_disk_then_carries_it_out(tmp_path: Path) -> None:
    gate = CommandGate(CA, tmp_path / "commands.sqlite3")
    key, cert = identity("collector:main")
    for n in range(40):  # some nonces already on disk
        gate.open(sign_command(resend("collector:main", NOW + n), key, cert), Resend, NOW, True)
    old = fill(gate.nonces._db)
    refused = 0
    for n in range(40, 400):
        payload = sign_command(resend("collector:main", NOW + n), key, cert)
        try:
            gate.open(payload, Resend, NOW, True)
        except CommandRefused as exc:
            assert "refused" in str(exc) and "full" in str(exc)
            refused += 1
            break
    assert refused == 1, "the disk never filled"
    gate.nonces._db.execute(f"PRAGMA max_page_count = {old}")
    assert (
        gate.open(payload, Resend, NOW, True).ts == NOW + n
    )  # the same command, once space is back
    with pytest.raises(CommandRefused, match="already carried out"):
        gate.open(payload, Resend, NOW, True)
    gate.close()


def test_a_book_that_cannot_even_begin_refuses_the_command_and_recovers(tmp_path: Path) -> None:
    """Found in review: `BEGIN IMMEDIATE` stood outside the handler, so a book whose
    connection was left inside a transaction raised a raw sqlite3 error through the gate
    and the unit's main loop died; now the command is refused and the book recovers."""
    book = NonceBook(tmp_path / "nonces.sqlite3", WINDOW_NS)
    book._db.execute("BEGIN")  # left open, as a rollback that failed would leave it
    with pytest.raises(NonceBookUnavailable, match="transaction"):
        book.admit("first", NOW)
    assert not book._db.in_transaction
    assert book.admit("first", NOW) is True
    assert book.admit("first", NOW) is False
