"""The alert engine's durable memory (SQLite): alerts, rule state, arming, audit, outbox.

Everything one engine call changes is written in one transaction together with the changes
it asks the collector to publish (the outbox row), so a crash leaves either nothing or a
state plus its unpublished changes, which `AlertEngine.pending` hands back. Rule state is
persisted, not rebuilt: door open since, last check-in, camera fault since, missing seqs,
offline and health flags. Only heartbeat arrival times are kept in memory (after a restart,
silence is judged from the restart); the last one is written along when a unit's watch
changes for another reason.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from broker.alerts.arming import SiteArming
from kernel.sqlite import open_db
from protocol.alerting import DEFAULT_ZONE, Alert, ArmingAudit

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    site TEXT NOT NULL,
    open INTEGER NOT NULL,
    raised_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_open_key ON alert(key) WHERE open = 1;
CREATE INDEX IF NOT EXISTS alert_site_time ON alert(site, raised_at);
CREATE TABLE IF NOT EXISTS watch (name TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS arming (site TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_site_time ON audit(site, at);
CREATE TABLE IF NOT EXISTS applied (
    site TEXT NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (site, device, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
"""


def arming_key(site: str, zone: str) -> str:
    """A zone panel's row: the site's id for the default zone (as before zones), else site/zone."""
    return site if zone == DEFAULT_ZONE else f"{site}/{zone}"


@dataclass
class Writes:
    """What one engine call changes; committed at once."""

    alerts: dict[str, tuple[str, Alert]] = field(default_factory=dict)  # id -> (key, alert)
    watches: dict[str, str | BaseModel | None] = field(default_factory=dict)
    """name -> its state (JSON, or the model, written as JSON at the commit: a door's watch
    changes with every event, and a batch writes only its last state); None deletes."""
    arming: dict[str, SiteArming] = field(default_factory=dict)  # arming_key -> panel
    audits: list[ArmingAudit] = field(default_factory=list)
    applied: list[tuple[str, str, int, int]] = field(default_factory=list)
    outbox: str | None = None

    def merge(self, other: Writes) -> None:
        """Fold a later call's writes into these (later values win)."""
        self.alerts.update(other.alerts)
        self.watches.update(other.watches)
        self.arming.update(other.arming)
        self.audits.extend(other.audits)
        self.applied.extend(other.applied)

    def __bool__(self) -> bool:
        return bool(
            self.alerts or self.watches or self.arming or self.audits or self.applied or self.outbox
        )


class AlertStore:
    """One writer (the collector's processing thread); CLI readers use read_alerts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = open_db(path, synchronous="FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # reading ---------------------------------------------------------------------------------

    def open_alerts(self) -> list[tuple[str, Alert]]:
        rows = self._db.execute("SELECT key, body FROM alert WHERE open = 1 ORDER BY raised_at")
        return [(key, Alert.model_validate_json(body)) for key, body in rows]

    def alert(self, alert_id: str) -> tuple[str, Alert] | None:
        row = self._db.execute("SELECT key, body FROM alert WHERE id = ?", (alert_id,)).fetchone()
        return (row[0], Alert.model_validate_json(row[1])) if row else None

    def alerts(self, *, site: str | None = None, since: int = 0, limit: int = 1000) -> list[Alert]:
        return _alerts(self._db, site=site, since=since, limit=limit, open_only=False)

    def watches(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT name, body FROM watch").fetchall())

    def arming(self) -> dict[str, SiteArming]:
        """Every zone's panel by its key (`arming_key`)."""
        rows = self._db.execute("SELECT site, body FROM arming").fetchall()
        return {key: SiteArming.model_validate_json(body) for key, body in rows}

    def audits(self, site: str | None = None, since: int = 0) -> list[ArmingAudit]:
        query = "SELECT body FROM audit WHERE at >= ?"
        args: tuple[object, ...] = (since,)
        if site is not None:
            query += " AND site = ?"
            args += (site,)
        rows = self._db.execute(query + " ORDER BY at, id", args)
        return [ArmingAudit.model_validate_json(body) for (body,) in rows]

    def last_audit_before(self, site: str, at: int, zone: str = DEFAULT_ZONE) -> ArmingAudit | None:
        """The zone's last change of arming state before `at` (operations left out)."""
        row = self._db.execute(
            "SELECT body FROM audit WHERE site = ? AND at < ? "
            "AND coalesce(json_extract(body, '$.zone'), ?) = ? "
            "AND coalesce(json_extract(body, '$.kind'), 'arming') = 'arming' "
            "ORDER BY at DESC, id DESC LIMIT 1",
            (site, at, DEFAULT_ZONE, zone),
        ).fetchone()
        return ArmingAudit.model_validate_json(row[0]) if row else None

    def applied_high_water(self) -> dict[tuple[str, str], int]:
        """Per unit, the highest seq applied (no seq above it has been)."""
        rows = self._db.execute("SELECT site, device, max(seq) FROM applied GROUP BY site, device")
        return {(site, device): int(seq) for site, device, seq in rows}

    def was_applied(self, site: str, device: str, seq: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM applied WHERE site = ? AND device = ? AND seq = ?", (site, device, seq)
        ).fetchone()
        return row is not None

    def outbox(self) -> list[tuple[int, str]]:
        return list(self._db.execute("SELECT id, body FROM outbox ORDER BY id"))

    # writing ---------------------------------------------------------------------------------

    def commit(self, writes: Writes) -> int | None:
        """Write everything in one transaction; returns the outbox row id, if any."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                outbox_id = self._write(writes)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return outbox_id

    def _write(self, w: Writes) -> int | None:
        db = self._db
        for alert_id, (key, alert) in w.alerts.items():
            db.execute(
                "INSERT INTO alert(id, key, site, open, raised_at, updated_at, body) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                "open=excluded.open, updated_at=excluded.updated_at, body=excluded.body",
                (
                    alert_id,
                    key,
                    alert.site,
                    int(alert.state.is_open),
                    alert.raised_at,
                    alert.closed_at or alert.acked_at or alert.last_seen,
                    alert.model_dump_json(),
                ),
            )
        for name, body in w.watches.items():
            if body is None:
                db.execute("DELETE FROM watch WHERE name = ?", (name,))
            else:
                text = body if isinstance(body, str) else body.model_dump_json()
                db.execute("INSERT OR REPLACE INTO watch(name, body) VALUES (?, ?)", (name, text))
        for site, state in w.arming.items():
            db.execute(
                "INSERT OR REPLACE INTO arming(site, body) VALUES (?, ?)",
                (site, state.model_dump_json()),
            )
        db.executemany(
            "INSERT INTO audit(site, at, body) VALUES (?, ?, ?)",
            [(a.site, a.at, a.model_dump_json()) for a in w.audits],
        )
        db.executemany(
            "INSERT OR IGNORE INTO applied(site, device, seq, at) VALUES (?, ?, ?, ?)", w.applied
        )
        if w.outbox is None:
            return None
        cur = db.execute("INSERT INTO outbox(body) VALUES (?)", (w.outbox,))
        return cur.lastrowid

    def confirm(self, outbox_ids: Iterable[int]) -> None:
        """The collector published these changes: forget them."""
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in outbox_ids])

    def prune(self, before: int) -> None:
        """Forget closed alerts, audit records and applied seqs older than `before`.

        The newest audit record of each site is kept, so the state at any later moment is known.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM alert WHERE open = 0 AND updated_at < ?", (before,))
            self._db.execute(
                "DELETE FROM audit WHERE at < ? AND id NOT IN "
                "(SELECT max(id) FROM audit GROUP BY site)",
                (before,),
            )
            self._db.execute("DELETE FROM applied WHERE at < ?", (before,))
            self._db.execute("COMMIT")


def read_alerts(
    path: Path, *, open_only: bool = True, site: str | None = None, limit: int = 1000
) -> list[Alert]:
    """For `jaga-collector alerts list` while the collector runs: a read-only look."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _alerts(db, site=site, since=0, limit=limit, open_only=open_only)
    finally:
        db.close()


def read_audits(path: Path, *, site: str | None = None, since: int = 0) -> list[ArmingAudit]:
    """For `jaga-collector trail` while the collector runs: the audit trail, read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        query = "SELECT body FROM audit WHERE at >= ?"
        args: list[object] = [since]
        if site is not None:
            query += " AND site = ?"
            args.append(site)
        rows = db.execute(query + " ORDER BY at, id", args).fetchall()
    finally:
        db.close()
    return [ArmingAudit.model_validate_json(body) for (body,) in rows]


def _alerts(
    db: sqlite3.Connection, *, site: str | None, since: int, limit: int, open_only: bool
) -> list[Alert]:
    query = "SELECT body FROM alert WHERE raised_at >= ?"
    args: tuple[object, ...] = (since,)
    if open_only:
        query += " AND open = 1"
    if site is not None:
        query += " AND site = ?"
        args += (site,)
    query += " ORDER BY raised_at DESC LIMIT ?"
    rows = db.execute(query, (*args, limit))
    return [Alert.model_validate_json(body) for (body,) in rows]
