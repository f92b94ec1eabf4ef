"""Which notification waits for which picture: the trigger's still follows its alarm's text.

An alarm's trigger (a door opening, a PIR's motion, the lid, a covered camera) makes a unit
with a camera take a set, armed or not (agent.domain.guard.PICTURED): pictures before, a
full-resolution still, pictures after; each trigger its own, also one inside another's
capture. An entry door's forced-door, raised when its delay runs out, names the door's
opening as its trigger. The unit signs their SHA-256 into a camera
event whose `cause` is the trigger's id, and the pictures arrive seconds after the trigger.
A notification never waits for them: its text goes at once, and a `picture_wait` row says the
still of its trigger is owed. When the collector stores that still (Collector._after_pictures
-> Notifier.pictures_stored), each row waiting for it becomes one more message to the same
routes, carrying the picture. If the still is stored already when the alarm notifies (a unit
back online sends its door event, camera event and pictures in one burst), the notification
carries it from the start.

All of it lives in the notification queue's SQLite (synchronous FULL), written in the same
transaction as the deliveries: a collector restart between the text and the picture loses
nothing, the wait and the camera event's cause being on disk; the still, once stored after
the restart, is sent. (A crash in the instant between the vault keeping the still and this
module hearing of it is covered only if the broker delivers its chunks again.) A still that
never comes (a unit without a camera, a camera that failed) lets its wait expire after
`WAIT_NS`, silently: the text has gone.

Every function here runs on the caller's connection, inside the caller's lock and transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from broker.alerts.lifecycle import ChangeKind
from broker.alerts.notifications import Notification
from kernel.units import DAY, MINUTE

SCHEMA = """
CREATE TABLE IF NOT EXISTS picture_wait (note_id TEXT PRIMARY KEY, trigger TEXT NOT NULL,
    body TEXT NOT NULL, since INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS picture_wait_trigger ON picture_wait(trigger);
CREATE TABLE IF NOT EXISTS camera_cause (event_id TEXT PRIMARY KEY, cause TEXT NOT NULL,
    seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS trigger_still (trigger TEXT PRIMARY KEY, sha256 TEXT NOT NULL,
    stored INTEGER NOT NULL);
"""

STILL = "still"
"""The role of the full-resolution picture taken at the trigger (protocol.snapshot.ChunkRole)."""
WAIT_NS = 15 * MINUTE
"""How long a notification's picture is waited for: the camera event comes seconds after its
trigger; a unit that was offline sends both in one burst, after the alarm was raised."""
KEEP_NS = DAY
"""How long camera events' causes and stored stills are remembered (for late notifications)."""


def wants_picture(note: Notification) -> bool:
    """An alarm raised (or raised again) by an event: its trigger may have a still."""
    return (
        note.kind in (ChangeKind.RAISED, ChangeKind.REPEATED)
        and note.alert is not None
        and note.alert.event_id is not None
        and note.picture is None
        and not note.follow_up
    )


def still_of(db: sqlite3.Connection, trigger: str) -> str | None:
    """The SHA-256 of the still stored for this trigger, if it is stored."""
    row = db.execute("SELECT sha256 FROM trigger_still WHERE trigger = ?", (trigger,)).fetchone()
    return str(row[0]) if row else None


def wait(db: sqlite3.Connection, note: Notification, now: int) -> None:
    """The note's picture is owed: send it when its trigger's still is stored."""
    assert note.alert is not None and note.alert.event_id is not None
    db.execute(
        "INSERT OR IGNORE INTO picture_wait(note_id, trigger, body, since) VALUES (?,?,?,?)",
        (note.id, note.alert.event_id, note.model_dump_json(), now),
    )


def remember_causes(db: sqlite3.Connection, causes: Iterable[tuple[str, str]], now: int) -> None:
    """(camera event id, the id of the event that caused it) of stored camera events."""
    db.executemany(
        "INSERT OR IGNORE INTO camera_cause(event_id, cause, seen) VALUES (?,?,?)",
        [(e, c, now) for e, c in causes],
    )


def stills_stored(
    db: sqlite3.Connection, stills: Iterable[tuple[str, str]], now: int
) -> list[Notification]:
    """(camera event id, SHA-256) of stills now in the evidence vault: the follow-ups they
    owe, each carrying its still; the waits they answer are gone."""
    out: list[Notification] = []
    for event_id, sha in stills:
        row = db.execute("SELECT cause FROM camera_cause WHERE event_id = ?", (event_id,))
        found = row.fetchone()
        if found is None:
            continue  # a camera event with no cause (a guard's Save, a schedule): no alarm's
        trigger = str(found[0])
        db.execute(
            "INSERT OR IGNORE INTO trigger_still(trigger, sha256, stored) VALUES (?,?,?)",
            (trigger, sha, now),
        )
        waiting = db.execute(
            "SELECT note_id, body FROM picture_wait WHERE trigger = ? ORDER BY since", (trigger,)
        ).fetchall()
        db.execute("DELETE FROM picture_wait WHERE trigger = ?", (trigger,))
        for _, body in waiting:
            note = Notification.model_validate_json(body)
            out.append(note.with_picture(sha, follow_up=True))
    return out


def expire(db: sqlite3.Connection, now: int) -> int:
    """Forget waits whose picture never came, and old causes and stills; returns the waits."""
    gone = db.execute("DELETE FROM picture_wait WHERE since < ?", (now - WAIT_NS,)).rowcount
    db.execute("DELETE FROM camera_cause WHERE seen < ?", (now - KEEP_NS,))
    db.execute("DELETE FROM trigger_still WHERE stored < ?", (now - KEEP_NS,))
    return int(gone)
