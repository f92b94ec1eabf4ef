from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from kernel.sqlite import open_db


@pytest.mark.parametrize("level, number", [("FULL", 2), ("NORMAL", 1)])
def test_open_db_sets_wal_and_the_named_synchronous_level(
    tmp_path: Path, level: str, number: int
) -> None:
    db = open_db(tmp_path / "sub" / "x.sqlite3", synchronous=level)  # type: ignore[arg-type]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == number
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert db.isolation_level is None
    db.close()


def test_an_unknown_synchronous_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        open_db(tmp_path / "x.sqlite3", synchronous="OFF")  # type: ignore[arg-type]


def test_a_damaged_file_fails_its_check_naming_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    db = open_db(path, synchronous="FULL")
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)")
    db.executemany("INSERT INTO t(y) VALUES (?)", [(f"row{i:05}" * 20,) for i in range(2000)])
    page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    raw = bytearray(path.read_bytes())
    leaf = (len(raw) // page // 2) * page  # a table leaf: swap its first two cells' pointers
    first, second = raw[leaf + 8 : leaf + 10], raw[leaf + 10 : leaf + 12]
    raw[leaf + 8 : leaf + 10], raw[leaf + 10 : leaf + 12] = second, first
    path.write_bytes(bytes(raw))
    open_db(path, synchronous="FULL").close()  # opening alone does not notice
    with pytest.raises(sqlite3.DatabaseError, match=r"outbox .* failed its integrity check"):
        open_db(path, synchronous="FULL", check=True, what="outbox")


def test_a_shared_connection_may_be_used_from_another_thread(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.sqlite3", synchronous="FULL")
    errors: list[BaseException] = []

    def use() -> None:
        try:
            db.execute("SELECT 1").fetchone()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=use)
    t.start()
    t.join()
    assert errors == []
    one = open_db(tmp_path / "y.sqlite3", synchronous="FULL", one_thread=True)
    t = threading.Thread(target=use)
    db = one
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)
