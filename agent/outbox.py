"""The unit's durable outbox: every event is on disk, signed and chained, before it is sent.

SQLite in WAL mode with synchronous=FULL: a row is on the platter when append() returns, and
`seq` and the chain head move in the same transaction as the row, so a power cut at any
instant can neither lose a stored event nor reuse a sequence number. Delivered rows are kept
for a while (bounded) so the collector can ask for a resend of anything a broker crash lost.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel.sqlite import open_db
from protocol.models import Checkpoint, Event, EventBody, Kind
from protocol.signing import GENESIS, event_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL DEFAULT 1,
    seq INTEGER UNIQUE,
    created_ns INTEGER NOT NULL,
    delivered_ns INTEGER
);
CREATE INDEX IF NOT EXISTS message_undelivered ON message(id) WHERE delivered_ns IS NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxFull(Exception):
    """The disk refused a write; the caller raises the disk-full flag and keeps alarming."""


@dataclass(frozen=True, slots=True)
class Pending:
    """One stored message waiting for its PUBACK."""

    id: int
    topic: str
    payload: bytes
    qos: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """What the unit knows about an observation before the outbox numbers and signs it."""

    sensor: str
    kind: Kind
    state: str
    ts: int
    mono_ns: int
    clock_synced: bool
    snapshot_sha256: tuple[str, ...] | None = None
    cause: str | None = None
    checkpoint: Checkpoint | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    """What one append stored: the signed event and the rows of its attachments, in order."""

    event: Event
    rows: tuple[int, ...] = ()


Signer = Callable[[EventBody], Event]
Attachments = Callable[[Event], list[tuple[str, bytes]]]
"""Messages that must be stored with an event, in the same transaction (its pictures)."""


class Outbox:
    """Durable, ordered queue of outgoing messages; safe to share between threads."""

    def __init__(
        self, path: Path, *, keep_delivered: int = 20_000, reserve_bytes: int = 4 * 1024 * 1024
    ) -> None:
        self.path = path
        self.reserve_path = path.with_name(path.name + ".reserve")
        self.reserve_bytes = reserve_bytes
        self._keep_delivered = keep_delivered
        self._lock = threading.Lock()
        self._db = open_db(path, synchronous="FULL", check=True, what="outbox")
        self._db.executescript(SCHEMA)
        self._appends = 0
        self.restore_reserve()

    def restore_reserve(self) -> bool:
        """Keep a few MB of the disk for alarms; True when the reserve is in place."""
        if self.reserve_path.exists():
            return True
        try:
            with self.reserve_path.open("wb") as fh:
                fh.write(b"\0" * self.reserve_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            self.reserve_path.unlink(missing_ok=True)
            return False
        return True

    def release_reserve(self) -> bool:
        """The disk is full: give the reserve back so the next events still fit."""
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append_event(
        self, new: NewEvent, *, site: str, device: str, boot_id: str, topic: str, signer: Signer
    ) -> Event:
        """Number, chain, sign and store an event alone (see append_event_with)."""
        return self.append_event_with(
            new, site=site, device=device, boot_id=boot_id, topic=topic, signer=signer
        ).event

    def append_event_with(
        self,
        new: NewEvent,
        *,
        site: str,
        device: str,
        boot_id: str,
        topic: str,
        signer: Signer,
        attachments: Attachments | None = None,
    ) -> Appended:
        """Number, chain, sign and store an event and its attachments in one transaction;
        returns the event and its attachments' rows, so no caller has to look them up.

        When the disk is full, the reserve file is given back and the event tried again, so
        alarms keep being stored (and sent) while the unit reports the full disk.
        """
        try:
            return self._append_event(new, site, device, boot_id, topic, signer, attachments)
        except OutboxFull:
            if not self.release_reserve():
                raise
            return self._append_event(new, site, device, boot_id, topic, signer, attachments)

    def _append_event(
        self,
        new: NewEvent,
        site: str,
        device: str,
        boot_id: str,
        topic: str,
        signer: Signer,
        attachments: Attachments | None,
    ) -> Appended:
        with self._lock:
            with self._transaction():
                last_seq, head = self._chain_locked()
                last_ts = int(self._meta_locked("last_ts", "0"))
                body = EventBody(
                    id=uuid.uuid4().hex,
                    site=site,
                    device=device,
                    sensor=new.sensor,
                    kind=new.kind,
                    state=new.state,
                    seq=last_seq + 1,
                    boot_id=boot_id,
                    # Strictly increasing per unit: no clock step can reorder the unit's
                    # events, and no two share InfluxDB's (series, time) identity.
                    ts=max(new.ts, last_ts + 1),
                    mono_ns=new.mono_ns,
                    clock_synced=new.clock_synced,
                    snapshot_sha256=new.snapshot_sha256,
                    cause=new.cause,
                    checkpoint=new.checkpoint,
                    prev=head,
                )
                event = signer(body)
                self._db.execute(
                    "INSERT INTO message(topic, payload, qos, seq, created_ns) VALUES (?,?,?,?,?)",
                    (topic, event.to_json(), 1, event.seq, time.time_ns()),
                )
                rows = self._insert_locked(attachments(event) if attachments else ())
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [
                        ("last_seq", str(event.seq)),
                        ("chain_head", event_hash(event)),
                        ("last_ts", str(event.ts)),
                    ],
                )
            self._appends += 1
            if self._appends % 500 == 0:
                self._prune_locked()
            return Appended(event, tuple(rows))

    def append_messages(self, messages: Sequence[tuple[str, bytes]]) -> list[int]:
        """Store messages that are not events (a picture's chunks, queued again) in one
        transaction; returns their row ids, in order. OutboxFull when the disk refuses."""
        if not messages:
            return []
        with self._lock, self._transaction():
            return self._insert_locked(messages)

    def _insert_locked(self, messages: Iterable[tuple[str, bytes]]) -> list[int]:
        """Insert messages that are not events (in the caller's transaction); their row ids."""
        now = time.time_ns()
        return [
            int(
                self._db.execute(
                    "INSERT INTO message(topic, payload, qos, created_ns) VALUES (?,?,1,?)",
                    (topic, payload, now),
                ).lastrowid
                or 0
            )
            for topic, payload in messages
        ]

    def picture_events(self, first_seq: int, last_seq: int) -> list[bytes]:
        """The stored events first_seq..last_seq that name pictures (camera events), as
        signed, oldest first; events already pruned are not among them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT payload FROM message WHERE seq BETWEEN ? AND ?"
                " AND json_extract(CAST(payload AS TEXT), '$.snapshot_sha256') IS NOT NULL"
                " ORDER BY seq",
                (first_seq, last_seq),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def chain(self) -> tuple[int, str]:
        """(last seq, chain head) as stored."""
        with self._lock:
            return self._chain_locked()

    def pending(self, after_id: int = 0, limit: int = 100) -> list[Pending]:
        """Undelivered messages after `after_id`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, seq FROM message"
                " WHERE delivered_ns IS NULL AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Pending(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def mark_delivered(self, ids: Iterable[int]) -> None:
        """Record PUBACKs; losing this write only causes a harmless resend."""
        batch = [(time.time_ns(), i) for i in ids]
        if not batch:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE message SET delivered_ns=? WHERE id=?", batch)
            # Picture chunks are kept by the evidence store: no second copy here.
            self._db.executemany(
                "DELETE FROM message WHERE id=? AND seq IS NULL", [(i,) for _, i in batch]
            )
            self._db.execute("COMMIT")

    def requeue(self, first_seq: int, last_seq: int) -> int:
        """Send events first_seq..last_seq again (the collector found them missing)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE message SET delivered_ns=NULL WHERE seq BETWEEN ? AND ?",
                (first_seq, last_seq),
            )
            return cur.rowcount

    def attachment_rows(self, after_seq: int) -> list[int]:
        """Row ids stored right after the event with seq `after_seq`, up to the next event
        (for inspection: an append returns its own rows)."""
        with self._lock:
            row = self._db.execute("SELECT id FROM message WHERE seq=?", (after_seq,)).fetchone()
            if row is None:
                return []
            nxt = self._db.execute(
                "SELECT min(id) FROM message WHERE seq IS NOT NULL AND id > ?", (row[0],)
            ).fetchone()[0]
            rows = self._db.execute(
                "SELECT id FROM message WHERE seq IS NULL AND id > ? AND id < ?",
                (row[0], nxt if nxt is not None else 2**62),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def undelivered(self, ids: Sequence[int]) -> set[int]:
        """Which of these rows are still waiting for their PUBACK (or were pruned: no)."""
        if not ids:
            return set()
        with self._lock:
            marks = ",".join("?" * len(ids))
            rows = self._db.execute(
                f"SELECT id FROM message WHERE delivered_ns IS NULL AND id IN ({marks})",
                tuple(ids),
            ).fetchall()
        return {int(r[0]) for r in rows}

    def depth(self) -> int:
        """Messages not yet acknowledged by the broker."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM message WHERE delivered_ns IS NULL"
            ).fetchone()
        return int(row[0])

    def _meta_locked(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else default

    def _chain_locked(self) -> tuple[int, str]:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return int(rows.get("last_seq", 0)), str(rows.get("chain_head", GENESIS))

    def _prune_locked(self) -> None:
        # Pictures are kept by the evidence store; their delivered chunks go at once.
        self._db.execute("DELETE FROM message WHERE seq IS NULL AND delivered_ns IS NOT NULL")
        self._db.execute(
            "DELETE FROM message WHERE delivered_ns IS NOT NULL AND id <= "
            "(SELECT id FROM message WHERE delivered_ns IS NOT NULL ORDER BY id DESC"
            " LIMIT 1 OFFSET ?)",
            (self._keep_delivered,),
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE .. COMMIT (the lock held); any error rolls back, and a disk that
        refuses the write is OutboxFull."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            if "full" in str(exc).lower() or "disk" in str(exc).lower():
                raise OutboxFull(str(exc)) from exc
            raise
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
