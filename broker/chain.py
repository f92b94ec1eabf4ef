"""Per-unit sequence and hash-chain book of the collector: dedupe, chain checks, gaps.

Checks are made against what is committed plus what is pending in the current batch; the
batch is committed only after its points are durably written, so a crash between the two
leads to a redelivery that is checked again, never to a hole.

Event times must grow with seq (the unit's outbox makes them so): an event's `ts` must lie
strictly between those of the nearest events held below and above it. InfluxDB keys an event
point by (series, time), so two events of a unit at one time would be one point, the later
silently replacing the stored one; refusing them keeps every stored event as it was.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from kernel.sqlite import open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS chain (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    prev TEXT NOT NULL,
    ts INTEGER,
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
    TIME_ORDER = "time-order"  # ts not strictly between the held neighbours' times


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


Held = tuple[str, str, int | None]
"""(hash, prev, ts) of an event the book holds; ts None: stored before times were kept."""


class ChainBook:
    """What the collector knows of each unit's chain; one writer thread."""

    def __init__(self, path: Path) -> None:
        self._db = open_db(path, synchronous="NORMAL")
        self._db.executescript(SCHEMA)
        if "ts" not in {row[1] for row in self._db.execute("PRAGMA table_info(chain)")}:
            # A book kept before event times were: the events already in it have no time
            # (NULL), and bound nothing; every event stored from now on does.
            self._db.execute("ALTER TABLE chain ADD COLUMN ts INTEGER")
        self._pending: dict[tuple[str, int], Held] = {}
        self._staged: dict[str, list[int]] = {}
        """Each unit's staged seqs, sorted: an event's nearest staged neighbours by bisection."""
        self._max: dict[str, int] = dict(
            self._db.execute("SELECT device, max(seq) FROM chain GROUP BY device").fetchall()
        )
        self._head: dict[str, tuple[int, str, str, int | None]] = {}
        """(seq, hash, prev, ts) of each unit's highest committed event, once stored: an
        in-order event's predecessor, answered without asking SQLite."""

    def close(self) -> None:
        self._db.close()

    def _get(self, device: str, seq: int) -> Held | None:
        hit = self._pending.get((device, seq))
        if hit is not None:
            return hit
        if seq > self._max.get(device, 0):
            return None  # above everything committed: this book is the chain's only writer
        head = self._head.get(device)
        if head is not None and head[0] == seq:
            return head[1], head[2], head[3]
        row = self._db.execute(
            "SELECT hash, prev, ts FROM chain WHERE device=? AND seq=?", (device, seq)
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def held(self, device: str, seq: int) -> str | None:
        """The hash of the unit's event at seq, committed or staged; None if there is none.
        The same hash again is a redelivery, told apart without verifying it again."""
        held = self._get(device, seq)
        return None if held is None else held[0]

    def check(self, device: str, seq: int, digest: str, prev: str, ts: int) -> Check:
        """Classify an event that verified; NEW ones are staged for the next commit.

        A redelivery (the same seq and hash) is a DUPLICATE whatever its time; only an event
        new to the book is held to the time order.
        """
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
        below = (seq - 1, before[2]) if before is not None else self._below(device, seq)
        if below is not None and below[1] is not None and ts <= below[1]:
            return Check(
                Verdict.TIME_ORDER,
                f"ts {ts} of seq {seq} is not after ts {below[1]} of seq {below[0]}",
            )
        above = (seq + 1, after[2]) if after is not None else self._above(device, seq)
        if above is not None and above[1] is not None and ts >= above[1]:
            return Check(
                Verdict.TIME_ORDER,
                f"ts {ts} of seq {seq} is not before ts {above[1]} of seq {above[0]}",
            )
        self._pending[(device, seq)] = (digest, prev, ts)
        bisect.insort(self._staged.setdefault(device, []), seq)
        return Check(Verdict.NEW)

    def _below(self, device: str, seq: int) -> tuple[int, int | None] | None:
        """(seq, ts) of the nearest event held below seq, staged or committed; None if none."""
        staged = self._staged.get(device, [])
        i = bisect.bisect_left(staged, seq)
        found = (staged[i - 1], self._pending[(device, staged[i - 1])][2]) if i else None
        top = self._max.get(device, 0)
        if found is not None and found[0] > top:
            return found  # above everything committed: nearer than any committed event
        head = self._head.get(device)
        if head is not None and head[0] < seq:
            committed: tuple[int, int | None] | None = (head[0], head[3])
        else:
            row = self._db.execute(
                "SELECT seq, ts FROM chain WHERE device=? AND seq<? ORDER BY seq DESC LIMIT 1",
                (device, seq),
            ).fetchone()
            committed = (row[0], row[1]) if row else None
        if committed is None or (found is not None and found[0] > committed[0]):
            return found
        return committed

    def _above(self, device: str, seq: int) -> tuple[int, int | None] | None:
        """(seq, ts) of the nearest event held above seq, staged or committed; None if none."""
        staged = self._staged.get(device, [])
        i = bisect.bisect_right(staged, seq)
        found = (staged[i], self._pending[(device, staged[i])][2]) if i < len(staged) else None
        if seq >= self._max.get(device, 0):
            return found  # nothing committed above (the in-order case: no SQLite look-up)
        row = self._db.execute(
            "SELECT seq, ts FROM chain WHERE device=? AND seq>? ORDER BY seq LIMIT 1",
            (device, seq),
        ).fetchone()
        committed = (row[0], row[1]) if row else None
        if committed is None or (found is not None and found[0] < committed[0]):
            return found
        return committed

    def commit(self, now_ns: int | None = None) -> list[tuple[str, int, int, str]]:
        """Store staged events; returns gap changes as (device, first, last, 'opened'|'closed')."""
        if not self._pending:
            return []
        if now_ns is None:
            now_ns = time.time_ns()
        changes: list[tuple[str, int, int, str]] = []
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR IGNORE INTO chain(device, seq, hash, prev, ts) VALUES (?,?,?,?,?)",
            [(d, s, h, p, t) for (d, s), (h, p, t) in self._pending.items()],
        )
        heads: dict[str, tuple[int, str, str, int | None]] = {}
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
        self._staged.clear()
        return changes

    def rollback(self) -> None:
        self._pending.clear()
        self._staged.clear()

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
