"""Getting notifications to people through apprise, durably and without blocking the engine.

Each notification becomes one delivery per apprise URL routed to its site and severity,
written to SQLite first (so a restart neither forgets nor repeats one: deliveries are unique
per notification and URL). Each URL has its own worker thread and bounded queue, so a dead
endpoint delays only itself; rows that do not fit in the queue wait on disk and are picked
up when it drains — nothing is dropped. A failing send is retried with exponential backoff
(tenacity); after `attempts` tries the row is marked failed and logged. `submit` never
blocks on the network. Which changes notify is notifications.py's policy.

Each notification is written for its route (its language, and the link to the alert's page
under the guard post's `page_url`). A notification of an alarm carries the trigger's still
as an apprise attachment (a Telegram photo, an e-mail attachment, a webhook's base64) when
the evidence vault has it; when it does not yet, the text goes now and the picture follows
once the collector stores it (picture_notes.py: `camera_events`, `pictures_stored`). A
picture is sent only as the vault holds it and only if it still hashes to its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential,
)

from broker.alerts import picture_notes
from broker.alerts.config import NotifyConfig
from broker.alerts.lifecycle import ChangeKind
from broker.alerts.notifications import Notification
from broker.i18n import DEFAULT as DEFAULT_LANGUAGE
from kernel.sqlite import open_db
from protocol.alerting import Severity
from protocol.models import Event, Kind

log = logging.getLogger("jaga.alerts.notify")


def urls_for(
    config: NotifyConfig, site: str, severity: Severity, *, duress: bool = False
) -> list[str]:
    """The apprise URLs of every route that takes this site and severity, each once; a duress
    alert goes only to the routes marked `duress = true`, whatever their severities."""
    urls: list[str] = []
    for route in config.routes:
        if route.sites and site not in route.sites:
            continue
        if route.duress if duress else severity in route.severities:
            urls.extend(u for u in route.urls if u not in urls)
    return urls


def language_of(config: NotifyConfig, url: str) -> str:
    """The language a URL is written to: that of the first route that lists it."""
    return next((r.language for r in config.routes if url in r.urls), DEFAULT_LANGUAGE)


def target_id(url: str) -> str:
    """A URL's name on disk and in logs: URLs carry tokens, which stay in the config only."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


Sender = Callable[[str, Notification], bool]
PicturePath = Callable[[str], Path]
"""Where the evidence vault keeps a picture, by its SHA-256 (EvidenceVault.path)."""


def read_picture(path: Path, sha256: str) -> bytes | None:
    """A picture's bytes, only if they still hash to the SHA-256 the unit signed."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


class AppriseSender:
    """Sends through apprise; one Apprise object per URL, each used by one worker.

    A notification's picture goes as an attachment, read from the evidence vault and checked
    against its SHA-256 at each send; one missing or altered is left out (and logged): the
    words still go."""

    def __init__(self, pictures: PicturePath | None = None) -> None:
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()
        self._pictures = pictures

    def __call__(self, url: str, note: Notification) -> bool:
        import apprise

        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = apprise.Apprise()
                client.add(url)
                self._clients[url] = client
        assert isinstance(client, apprise.Apprise)
        kind = {
            ChangeKind.CLEARED: apprise.NotifyType.SUCCESS,
            ChangeKind.RESOLVED: apprise.NotifyType.SUCCESS,
        }.get(note.kind)
        if kind is None:
            critical = note.severity is Severity.CRITICAL
            kind = apprise.NotifyType.FAILURE if critical else apprise.NotifyType.WARNING
        attach = self._attachment(note)
        return bool(
            client.notify(body=note.body, title=note.title, notify_type=kind, attach=attach)
        )

    def _attachment(self, note: Notification) -> object | None:
        if note.picture is None or self._pictures is None:
            return None
        import apprise
        from apprise.attachment.memory import AttachMemory

        data = read_picture(self._pictures(note.picture), note.picture)
        if data is None:
            log.error(
                "notification %s: picture %s is not in the evidence vault as signed; "
                "sent without it",
                note.id,
                note.picture,
            )
            return None
        name = f"{note.alert_id}-{note.picture[:12]}.jpg"
        attach = apprise.AppriseAttachment()
        attach.add(AttachMemory(content=data, name=name, mimetype="image/jpeg"))  # type: ignore[no-untyped-call]
        return attach


DELIVERY_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS delivery (
    id INTEGER PRIMARY KEY,
    note_id TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created INTEGER NOT NULL,
    done INTEGER,
    UNIQUE (note_id, target)
);
CREATE INDEX IF NOT EXISTS delivery_pending ON delivery(target, state, id);
"""
    + picture_notes.SCHEMA
)


@dataclass
class NotifierStats:
    submitted: int = 0
    delivered: int = 0
    failed: int = 0
    retries: int = 0
    unrouted: int = 0
    pictures: int = 0
    """Notifications that carry a picture (with their text, or following it)."""


class Notifier:
    """Background delivery of notifications; start() once, submit() from the engine's thread."""

    def __init__(
        self,
        config: NotifyConfig,
        path: Path,
        *,
        sender: Sender | None = None,
        clock: Callable[[], int] = time.time_ns,
        page_url: str | None = None,
        pictures: PicturePath | None = None,
    ) -> None:
        """page_url: the guard post's address as phones reach it (links to alerts; None: no
        link). pictures: where the evidence vault keeps a picture (None: no pictures)."""
        self.config = config
        self.page_url = page_url
        self._with_pictures = pictures is not None
        # FULL: a notification queued is one that will be sent after a crash.
        self._db = open_db(path, synchronous="FULL", what="notification queue")
        self._db.executescript(DELIVERY_SCHEMA)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._send = sender or AppriseSender(pictures)
        self._clock = clock
        self.stats = NotifierStats()
        urls = [u for route in config.routes for u in route.urls]
        self._channels = {
            target_id(u): _Channel(self, target_id(u), u) for u in dict.fromkeys(urls)
        }
        self._in_flight = 0

    def start(self) -> None:
        """Start one worker per URL; deliveries left pending by the last run go first."""
        self._abandon_unknown_targets()
        for channel in self._channels.values():
            channel.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; what was not delivered stays pending for the next start."""
        self._stopping.set()
        for channel in self._channels.values():
            channel.wake()
        for channel in self._channels.values():
            channel.join(timeout)
        with self._lock:
            self._db.close()

    def submit(self, notes: Iterable[Notification]) -> None:
        """Record deliveries durably and queue them; returns at once, whatever the endpoints do.
        An alarm's notification carries its trigger's still if stored, else owes it."""
        for note in notes:
            duress = note.key.startswith("duress:")  # rules.SILENT: only its routes
            urls = urls_for(self.config, note.site, note.severity, duress=duress)
            if not urls:
                self.stats.unrouted += 1
                continue
            self.stats.submitted += 1
            self._record(note, urls)

    def camera_events(self, events: Iterable[object]) -> None:
        """Stored events: the camera events among them say which trigger their pictures show."""
        causes = [
            (e.id, e.cause)
            for e in events
            if isinstance(e, Event) and e.kind is Kind.CAMERA and e.cause and e.snapshot_sha256
        ]
        if not causes or not self._with_pictures:
            return
        with self._lock:  # one transaction (one fsync) for a burst's camera events
            self._db.execute("BEGIN")
            try:
                picture_notes.remember_causes(self._db, causes, self._clock())
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pictures_stored(self, stored: Iterable[tuple[str, str, str]]) -> None:
        """(camera event id, SHA-256, role) of pictures now in the evidence vault: the stills
        among them go to the notifications that owe them."""
        stills = [(e, sha) for e, sha, role in stored if role == picture_notes.STILL]
        if not stills or not self._with_pictures:
            return
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                notes = picture_notes.stills_stored(self._db, stills, now)
                picture_notes.expire(self._db, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.submit(notes)

    def _record(self, note: Notification, urls: list[str]) -> None:
        """One delivery per URL and, for an alarm whose still is not stored yet, the wait for
        it: in one transaction, so a crash keeps both or neither."""
        rows: list[tuple[str, int]] = []
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                if self._with_pictures and picture_notes.wants_picture(note):
                    assert note.alert is not None and note.alert.event_id is not None
                    still = picture_notes.still_of(self._db, note.alert.event_id)
                    if still is not None:
                        note = note.with_picture(still, follow_up=False)
                    else:
                        picture_notes.expire(self._db, now)
                        picture_notes.wait(self._db, note, now)
                for url in urls:
                    routed = note.for_route(language_of(self.config, url), self.page_url)
                    row = self._insert_row(routed, target_id(url), now)
                    if row is not None:
                        rows.append((target_id(url), row))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if note.picture is not None and rows:
            self.stats.pictures += 1
        for target, row in rows:
            self._channels[target].offer(row)

    def pending(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM delivery WHERE state = 'pending'"
            ).fetchone()
        return int(count)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending (for tests and an orderly shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while True:
                (count,) = self._db.execute(
                    "SELECT count(*) FROM delivery WHERE state = 'pending'"
                ).fetchone()
                left = deadline - time.monotonic()
                if count == 0 or left <= 0:
                    return bool(count == 0)
                self._idle.wait(min(left, 0.5))

    def deliveries(self) -> list[tuple[str, str, str, int]]:
        """(note id, target, state, attempts) of every delivery, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT note_id, target, state, attempts FROM delivery ORDER BY id"
            ).fetchall()
        return [(str(a), str(b), str(c), int(d)) for a, b, c, d in rows]

    # worker side -----------------------------------------------------------------------------

    def _insert_row(self, note: Notification, target: str, now: int) -> int | None:
        cur = self._db.execute(
            "INSERT OR IGNORE INTO delivery(note_id, target, body, created) VALUES (?,?,?,?)",
            (note.id, target, note.model_dump_json(), now),
        )
        return cur.lastrowid if cur.rowcount else None

    def _pending_rows(self, target: str, exclude: set[int], limit: int) -> list[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM delivery WHERE target = ? AND state = 'pending' ORDER BY id",
                (target,),
            ).fetchall()
        return [r for (r,) in rows if r not in exclude][:limit]

    def _load(self, row: int) -> Notification | None:
        with self._lock:
            found = self._db.execute(
                "SELECT body FROM delivery WHERE id = ? AND state = 'pending'", (row,)
            ).fetchone()
        return Notification.model_validate_json(found[0]) if found else None

    def _finish(self, row: int, ok: bool, attempts: int, error: str | None) -> None:
        with self._idle:
            if ok or not self._stopping.is_set():
                state = "sent" if ok else "failed"
                self._db.execute(
                    "UPDATE delivery SET state = ?, attempts = attempts + ?, error = ?, done = ? "
                    "WHERE id = ?",
                    (state, attempts, error, self._clock(), row),
                )
            else:  # stopping: try again after the next start
                self._db.execute(
                    "UPDATE delivery SET attempts = attempts + ? WHERE id = ?", (attempts, row)
                )
            self._idle.notify_all()

    def _deliver(self, channel: _Channel, row: int) -> None:
        note = self._load(row)
        if note is None:
            return
        attempts = 0
        last_error: str | None = None

        def once() -> bool:
            nonlocal attempts, last_error
            if attempts and self._stopping.is_set():
                return False  # stop() cut the backoff short: leave it for the next start
            attempts += 1
            try:
                ok = self._send(channel.url, note)
            except Exception as exc:  # a plugin bug must not kill the worker
                last_error = f"{type(exc).__name__}: {exc}"[:500]
                raise
            last_error = None if ok else "the endpoint did not accept the notification"
            return ok

        cfg = self.config
        retrying = Retrying(
            stop=stop_after_attempt(cfg.attempts) | stop_when_event_set(self._stopping),
            wait=wait_exponential(multiplier=cfg.backoff_initial_s, max=cfg.backoff_max_s),
            retry=retry_if_result(lambda ok: not ok) | retry_if_exception_type(Exception),
            sleep=self._pause,
            retry_error_callback=lambda _state: False,
        )
        ok = bool(retrying(once))
        self.stats.retries += max(attempts - 1, 0)
        if ok:
            self.stats.delivered += 1
        elif not self._stopping.is_set():
            self.stats.failed += 1
            log.error(
                "notification %s to target %s failed after %d attempt(s): %s",
                note.id,
                channel.target,
                attempts,
                last_error,
            )
        self._finish(row, ok, attempts, last_error)

    def _pause(self, seconds: float) -> None:
        """Backoff that a stop() cuts short."""
        self._stopping.wait(seconds)

    def _abandon_unknown_targets(self) -> None:
        """Deliveries to URLs no longer in the config cannot be sent: mark and log them."""
        with self._lock:
            known = list(self._channels)
            marks = ",".join("?" * len(known)) or "''"
            cur = self._db.execute(
                f"UPDATE delivery SET state = 'failed', error = 'URL no longer configured' "
                f"WHERE state = 'pending' AND target NOT IN ({marks})",
                known,
            )
        if cur.rowcount:
            log.warning(
                "%d pending notification(s) were for URLs no longer configured", cur.rowcount
            )


WAKE = -1  # not a row id: wakes a worker to notice stop()


class _Channel:
    """One URL: a worker thread and a bounded queue of delivery rows."""

    def __init__(self, notifier: Notifier, target: str, url: str) -> None:
        self.notifier = notifier
        self.target = target
        self.url = url
        self.queue: queue.Queue[int] = queue.Queue(maxsize=notifier.config.queue_max)
        self._queued: set[int] = set()
        self._lock = threading.Lock()
        self._spilled = True  # look on disk at start for rows left by the last run
        self._thread = threading.Thread(target=self._run, name=f"notify-{target}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wake(self) -> None:
        """Get the worker out of its wait (stop)."""
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(WAKE)

    def offer(self, row: int) -> None:
        """Queue a row if there is room; else it waits on disk for the worker to fetch it."""
        with self._lock:
            if row in self._queued:
                return
            try:
                self.queue.put_nowait(row)
            except queue.Full:
                self._spilled = True
                return
            self._queued.add(row)

    def _refill(self) -> None:
        with self._lock:
            if not self._spilled:
                return
            self._spilled = False
            exclude = set(self._queued)
        room = self.queue.maxsize - self.queue.qsize()
        for row in self.notifier._pending_rows(self.target, exclude, room + 1):
            self.offer(row)

    def _run(self) -> None:
        stopping = self.notifier._stopping
        while not stopping.is_set():
            if self.queue.empty():
                self._refill()
            try:
                row = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if row == WAKE:
                continue
            try:
                self.notifier._deliver(self, row)
            except Exception:
                log.exception("notification worker for target %s", self.target)
            finally:
                with self._lock:
                    self._queued.discard(row)
