"""Per-unit sequence and hash-chain book of the collector: dedupe, chain checks, gaps.

Checks are made against what is committed plus what is pending in the current batch; the
batch is committed only after its points are durably written, so a crash between the two
leads to a redelivery that is checked again, never to a hole.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS chain (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    prev TEXT NOT NULL,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gap (
    device TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    opened_ns INTEGER NOT NULL,
    PRIMARY KEY (device, first)
) WITHOUT ROWID;
"""


class Verdict(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    FORK = "fork"  # a different event with a seq we already hold: replay or forgery
    BROKEN_CHAIN = "broken-chain"  # prev does not match the neighbour we hold


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Gap:
    device: str
    first: int
    last: int
    opened_ns: int


class ChainBook:
    """What the collector knows of each unit's chain; one writer thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._pending: dict[tuple[str, int], tuple[str, str]] = {}
        self._max: dict[str, int] = dict(
            self._db.execute("SELECT device, max(seq) FROM chain GROUP BY device").fetchall()
        )
        self._head: dict[str, tuple[int, str, str]] = {}
        """(seq, hash, prev) of each unit's highest committed event, once looked up or stored:
        an in-order event's predecessor, answered without asking SQLite."""

    def close(self) -> None:
        self._db.close()

    def _get(self, device: str, seq: int) -> tuple[str, str] | None:
        hit = self._pending.get((device, seq))
        if hit is not None:
            return hit
        if seq > self._max.get(device, 0):
            return None  # above everything committed: this book is the chain's only writer
        head = self._head.get(device)
        if head is not None and head[0] == seq:
            return head[1], head[2]
        row = self._db.execute(
            "SELECT hash, prev FROM chain WHERE device=? AND seq=?", (device, seq)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def held(self, device: str, seq: int) -> str | None:
        """The hash of the unit's event at seq, committed or staged; None if there is none.
        The same hash again is a redelivery, told apart without verifying it again."""
        held = self._get(device, seq)
        return None if held is None else held[0]

    def check(self, device: str, seq: int, digest: str, prev: str) -> Check:
        """Classify an event that verified; NEW ones are staged for the next commit."""
        held = self._get(device, seq)
        if held is not None:
            if held[0] == digest:
                return Check(Verdict.DUPLICATE)
            return Check(Verdict.FORK, f"seq {seq} already held with another content")
        before = self._get(device, seq - 1) if seq > 1 else None
        if before is not None and before[0] != prev:
            return Check(
                Verdict.BROKEN_CHAIN, f"prev of seq {seq} is not the hash of seq {seq - 1}"
            )
        after = self._get(device, seq + 1)
        if after is not None and after[1] != digest:
            return Check(Verdict.BROKEN_CHAIN, f"seq {seq + 1} does not chain to seq {seq}")
        self._pending[(device, seq)] = (digest, prev)
        return Check(Verdict.NEW)

    def commit(self, now_ns: int | None = None) -> list[tuple[str, int, int, str]]:
        """Store staged events; returns gap changes as (device, first, last, 'opened'|'closed')."""
        if not self._pending:
            return []
        if now_ns is None:
            now_ns = time.time_ns()
        changes: list[tuple[str, int, int, str]] = []
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR IGNORE INTO chain(device, seq, hash, prev) VALUES (?,?,?,?)",
            [(d, s, h, p) for (d, s), (h, p) in self._pending.items()],
        )
        heads: dict[str, tuple[int, str, str]] = {}
        for device, seq in sorted(self._pending):
            top = self._max.get(device, 0)
            if seq > top:
                heads[device] = (seq, *self._pending[(device, seq)])
            if seq > top + 1:
                self._db.execute(
                    "INSERT OR REPLACE INTO gap(device, first, last, opened_ns) VALUES (?,?,?,?)",
                    (device, top + 1, seq - 1, now_ns),
                )
                changes.append((device, top + 1, seq - 1, "opened"))
            elif seq <= top:
                changes.extend(self._fill_locked(device, seq))
            self._max[device] = max(top, seq)
        self._db.execute("COMMIT")
        self._head.update(heads)
        self._pending.clear()
        return changes

    def rollback(self) -> None:
        self._pending.clear()

    def _fill_locked(self, device: str, seq: int) -> list[tuple[str, int, int, str]]:
        row = self._db.execute(
            "SELECT first, last, opened_ns FROM gap WHERE device=? AND first<=? AND last>=?",
            (device, seq, seq),
        ).fetchone()
        if row is None:
            return []
        first, last, opened = row
        self._db.execute("DELETE FROM gap WHERE device=? AND first=?", (device, first))
        if first < seq:
            self._db.execute(
                "INSERT INTO gap(device, first, last, opened_ns) VALUES (?,?,?,?)",
                (device, first, seq - 1, opened),
            )
        if seq < last:
            self._db.execute(
                "INSERT INTO gap(device, first, last, opened_ns) VALUES (?,?,?,?)",
                (device, seq + 1, last, opened),
            )
        return [(device, seq, seq, "closed")]

    def gaps(self, device: str | None = None) -> list[Gap]:
        q = "SELECT device, first, last, opened_ns FROM gap"
        args: tuple[str, ...] = ()
        if device is not None:
            q += " WHERE device=?"
            args = (device,)
        return [Gap(*r) for r in self._db.execute(q + " ORDER BY device, first", args)]

    def last_seq(self, device: str) -> int:
        return self._max.get(device, 0)
