"""The witness's own record, append-only: every event hash it accepted, every cosignature it
made, every fork it refused. SQLite with synchronous=FULL: a batch is on disk before the
broker hears that its events were taken (the witness acknowledges only then)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kernel.sqlite import open_db
from protocol.cosignature import Cosignature, ForkReport, Signed
from protocol.signing import GENESIS
from witness.chains import Held

SCHEMA = """
CREATE TABLE IF NOT EXISTS event (
    site TEXT NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL,
    hash TEXT NOT NULL, prev TEXT NOT NULL, seen_ms INTEGER NOT NULL,
    PRIMARY KEY (site, device, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cosignature (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL, head TEXT NOT NULL,
    time_ms INTEGER NOT NULL, body TEXT NOT NULL, sig TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cosignature_unit ON cosignature (site, device, id);
CREATE TABLE IF NOT EXISTS fork (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL, seq INTEGER NOT NULL,
    seen TEXT NOT NULL, offered TEXT NOT NULL, time_ms INTEGER NOT NULL,
    body TEXT NOT NULL, sig TEXT NOT NULL
);
"""
APPEND_ONLY = [
    f"CREATE TRIGGER IF NOT EXISTS {table}_{verb}_refused BEFORE {verb.upper()} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the witness log is append-only'); END;"
    for table in ("event", "cosignature", "fork")
    for verb in ("update", "delete")
]


@dataclass(frozen=True, slots=True)
class Summary:
    cosignatures: int
    units: int
    """Units with at least one cosignature."""
    forks: int
    events: int


class WitnessLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_db(path, synchronous="FULL", check=True, what="witness log")
        self.db.executescript(SCHEMA + "\n".join(APPEND_ONLY))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable commit for a batch of writes."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # reading -----------------------------------------------------------------------------

    def around(self, site: str, device: str, seq: int) -> Held:
        rows = self.db.execute(
            "SELECT seq, hash, prev FROM event WHERE site=? AND device=? AND seq BETWEEN ? AND ?",
            (site, device, seq - 1, seq + 1),
        ).fetchall()
        by_seq = {r[0]: (r[1], r[2]) for r in rows}
        before = GENESIS if seq == 1 else by_seq.get(seq - 1, (None, None))[0]
        return Held(
            head_seq=self.head(site, device)[0],
            at=by_seq.get(seq, (None, None))[0],
            before=before,
            after_prev=by_seq.get(seq + 1, (None, None))[1],
        )

    def head(self, site: str, device: str) -> tuple[int, str]:
        """(seq, hash) of the highest event held for the unit; (0, GENESIS) for none."""
        row = self.db.execute(
            "SELECT seq, hash FROM event WHERE site=? AND device=? ORDER BY seq DESC LIMIT 1",
            (site, device),
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def last_cosigned(self, site: str, device: str) -> tuple[int, int] | None:
        """(seq, time_ms) of the unit's latest cosignature."""
        row = self.db.execute(
            "SELECT seq, time_ms FROM cosignature WHERE site=? AND device=? "
            "ORDER BY id DESC LIMIT 1",
            (site, device),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def units(self) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT DISTINCT site, device FROM event ORDER BY site, device")
        return [(str(s), str(d)) for s, d in rows]

    def held(self, site: str, device: str) -> Iterator[tuple[int, str, int]]:
        """(seq, hash, seen_ms) of every event held for the unit, by seq."""
        rows = self.db.execute(
            "SELECT seq, hash, seen_ms FROM event WHERE site=? AND device=? ORDER BY seq",
            (site, device),
        )
        for seq, digest, seen in rows:
            yield int(seq), str(digest), int(seen)

    def summary(self) -> Summary:
        one = self.db.execute
        return Summary(
            cosignatures=int(one("SELECT count(*) FROM cosignature").fetchone()[0]),
            units=int(
                one(
                    "SELECT count(*) FROM (SELECT DISTINCT site, device FROM cosignature)"
                ).fetchone()[0]
            ),
            forks=int(one("SELECT count(*) FROM fork").fetchone()[0]),
            events=int(one("SELECT count(*) FROM event").fetchone()[0]),
        )

    def latest_cosignatures(self) -> list[tuple[str, str]]:
        """(body, sig) of each unit's latest cosignature: republished after a reconnect."""
        rows = self.db.execute(
            "SELECT body, sig FROM cosignature WHERE id IN "
            "(SELECT max(id) FROM cosignature GROUP BY site, device)"
        )
        return [(str(b), str(s)) for b, s in rows]

    # appending ---------------------------------------------------------------------------

    def add_event(
        self, site: str, device: str, seq: int, digest: str, prev: str, now_ms: int
    ) -> None:
        try:
            self.db.execute(
                "INSERT INTO event (site, device, seq, hash, prev, seen_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (site, device, seq, digest, prev, now_ms),
            )
        except sqlite3.IntegrityError:
            raise ValueError(f"{site}/{device} seq {seq} is already held") from None

    def add_cosignature(self, c: Cosignature, signed: Signed) -> None:
        self.db.execute(
            "INSERT INTO cosignature (site, device, seq, head, time_ms, body, sig) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (c.site, c.device, c.seq, c.head, c.time_ms, signed.body.decode(), signed.sig),
        )

    def add_fork(self, f: ForkReport, signed: Signed) -> None:
        self.db.execute(
            "INSERT INTO fork (site, device, kind, seq, seen, offered, time_ms, body, sig) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                f.site,
                f.device,
                f.kind,
                f.seq,
                f.seen,
                f.offered,
                f.time_ms,
                signed.body.decode(),
                signed.sig,
            ),
        )
