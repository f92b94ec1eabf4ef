"""The bridge to the alert engine: judge stored batches, carry out its decisions, and take
operators' commands, the guard post's acknowledgements and the clock's ticks.

An alert bug never stops storage: every call into the engine is guarded. What the engine
decides is published (retained), stored, notified, and only then confirmed, so a crash in
between publishes it again at the next start (`recover`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future

from broker.alerts.changes import Changes
from broker.alerts.delivery import Notifier
from broker.alerts.engine import AlertEngine
from broker.alerts.lifecycle import AlertError
from broker.alerts.operations import Operation
from broker.alerts.unit_rules import IntegrityLike
from broker.chain import ChainBook
from broker.collector.session import BrokerSession
from broker.collector.settle import Settled
from broker.collector.stats import CollectorStats
from broker.collector.storage import Storage
from broker.evidence import EvidenceRefused
from broker.ingest import Accepted
from broker.refs import UnitRef
from broker.web.state import LiveState
from protocol import topics
from protocol.models import Event, Heartbeat

log = logging.getLogger("jaga.collector")

GapChange = tuple[str, int, int, str]
"""(device, first, last, 'opened'|'closed') from ChainBook.commit."""


class AlertBridge:
    def __init__(
        self,
        engine: AlertEngine,
        notifier: Notifier,
        session: BrokerSession,
        storage: Storage,
        live: LiveState,
        stats: CollectorStats,
    ) -> None:
        self.engine = engine
        self.notifier = notifier
        self.session = session
        self.storage = storage
        self.live = live
        self.listeners: list[Callable[[Changes], None]] = []
        """Others that hear every change the guard-post page hears (Home Assistant's bridge)."""
        self.stats = stats
        self.web_acks: queue.Queue[tuple[str, str, Future[bool]]] = queue.Queue()
        self.operations: queue.Queue[tuple[Operation, Future[Changes]]] = queue.Queue()
        self._tick_at = 0.0
        self._recovered = False
        self._linked = False
        engine.link_lost()  # until the first connection: no unit is heard yet

    def judge(self, settled: Settled) -> list[Changes]:
        """The alert rules over a stored batch (before its chain is committed: a crash after
        this and before the commit redelivers the batch, and the engine skips what it did)."""

        def rules() -> list[Changes]:
            with self.engine.batch() as changes:
                for m, msg in zip(_received(settled), settled.accepted, strict=True):
                    if isinstance(msg, Event):
                        self.engine.on_event(msg, m)
                    elif isinstance(msg, Heartbeat):
                        self.engine.on_heartbeat(msg, m)
                    else:
                        self.engine.on_status(msg, m)
                for inbound, r in settled.rejected:
                    if r.is_integrity:
                        self.engine.on_integrity(r, inbound.received_ns)
            return [changes]

        return self._guarded("rules", rules)

    def on_gaps(self, gaps: list[GapChange], site_of: Mapping[str, str], now: int) -> list[Changes]:
        """The chain book's gap changes, once committed."""
        if not gaps:
            return []
        return self._guarded(
            "gaps",
            lambda: [
                self.engine.on_gap(site_of.get(d, "unknown"), d, a, b, c, now)
                for d, a, b, c in gaps
            ],
        )

    def integrity(self, rejected: Sequence[IntegrityLike]) -> list[Changes]:
        """Rejections outside a batch of events (pictures whose hash lies, or not vouched;
        witnesses' fork reports)."""
        now = time.time_ns()
        return self._guarded("rules", lambda: [self.engine.on_integrity(r, now) for r in rejected])

    def evidence_refused(self, refused: list[tuple[UnitRef, EvidenceRefused]]) -> list[Changes]:
        now = time.time_ns()
        return self._guarded(
            "evidence",
            lambda: [
                self.engine.on_evidence_refused(u.site, u.device, str(e), e.disk_full, now)
                for u, e in refused
            ],
        )

    def emit(self, changes: Changes, stop: threading.Event) -> None:
        """Publish (retained), store and notify what the engine decided, then confirm."""
        if not changes.outbox_id and not changes.messages() and not changes.points:
            return
        self._tell(changes)
        sent = [
            self.session.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
            for m in changes.messages()
        ]
        for change in changes.alerts:
            a = change.alert
            log.warning(
                "alert %s %s: %s %s/%s %s",
                a.id,
                change.kind.value,
                a.severity.value,
                a.site,
                a.device,
                a.title,
            )
        self.storage.store([p.to_point() for p in changes.points], stop)
        self.notifier.submit(changes.notifications)
        if all(sent):
            self.engine.confirm(changes)
        self.stats.alerts += len(changes.alerts)

    def turn(self, stop: threading.Event, chain: ChainBook, site_of: Mapping[str, str]) -> None:
        """Every turn of the loop: recover once subscribed, then the guard post's acks and
        operators' commands; about once a second, the timed rules."""
        now_mono = time.monotonic()
        if not self._recovered and self.session.subscribed.is_set():
            self._recovered = True
            self.recover(stop, chain, site_of)
        while True:
            try:
                alert_id, by, done = self.web_acks.get_nowait()
            except queue.Empty:
                break
            try:
                changes = self.engine.ack(alert_id, by, time.time_ns())
            except AlertError as exc:
                done.set_exception(exc)
                continue
            self.emit(changes, stop)
            done.set_result(True)
        while True:
            try:
                op, asked = self.operations.get_nowait()
            except queue.Empty:
                break
            try:
                changes = op.apply(self.engine, time.time_ns())
            except AlertError as exc:
                log.warning("%s of %s by %s refused: %s", op.action, op.site, op.by, exc)
                asked.set_exception(exc)  # the person's answer first, the same as ever
                if exc.changes is not None:  # decided regardless (a duress PIN's alert)
                    self.emit(exc.changes, stop)
                continue
            log.info("%s of %s (zone %s) by %s (%s)", op.action, op.site, op.zone, op.by, op.how)
            self.emit(changes, stop)
            asked.set_result(changes)
        while True:
            try:
                topic, payload = self.session.commands.get_nowait()
            except queue.Empty:
                break
            self.command(topic, payload, stop)
        linked = self.session.stats.connected
        if linked != self._linked:
            # A broker restart publishes every unit's will and drops us: judge no unit until
            # we are back, then from then plus the resume grace (the units reconnect too).
            self._linked = linked
            if linked:
                self.engine.link_back(time.time_ns())
            else:
                self.engine.link_lost()
        if now_mono - self._tick_at >= 1.0:
            self._tick_at = now_mono
            for changes in self._guarded("tick", lambda: [self.engine.tick(time.time_ns())]):
                self.emit(changes, stop)

    def operate(self, op: Operation, timeout: float = 10.0) -> Changes:
        """Arm, disarm or bypass from another thread (the page, a Home Assistant bridge): done
        on the collector's own thread; AlertError when refused, TimeoutError without answer."""
        op = op.judge(self.engine.config.people)  # here, not on the collector's thread
        asked: Future[Changes] = Future()
        self.operations.put((op, asked))
        return asked.result(timeout=timeout)

    def ack_from_web(self, alert_id: str, by: str) -> bool:
        """The guard post's Acknowledge (a web thread): done on the collector's own thread."""
        done: Future[bool] = Future()
        self.web_acks.put((alert_id, by, done))
        return done.result(timeout=10)

    def recover(self, stop: threading.Event, chain: ChainBook, site_of: Mapping[str, str]) -> None:
        """Publish what a crash may have left unpublished, and the retained truth."""
        now = time.time_ns()
        for changes in self._guarded("recovery", self.engine.pending):
            self.emit(changes, stop)
        snapshot = self.engine.snapshot(now)
        self._tell(snapshot)
        for m in snapshot.messages():
            self.session.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
        sites = dict(site_of)
        for changes in self._guarded(
            "gap sync", lambda: [self.engine.sync_gaps(chain.gaps(), sites, now)]
        ):
            self.emit(changes, stop)

    def command(self, topic: str, payload: bytes, stop: threading.Event) -> None:
        parsed = topics.parse_site_command(topic)
        if parsed is None:  # only site commands are queued here
            return
        site, name = parsed
        try:
            changes = self.engine.command(site, name, payload, time.time_ns())
        except AlertError as exc:
            log.warning("command %s refused: %s", topic, exc)
            self.stats.commands_refused += 1
            if exc.changes is not None:  # decided regardless (a duress PIN's alert)
                self.emit(exc.changes, stop)
            return
        except Exception:
            log.exception("command %s failed", topic)
            return
        log.info("command %s carried out", topic)
        self.emit(changes, stop)

    def _tell(self, changes: Changes) -> None:
        """The page, then each listener; a listener's bug never stops an alert."""
        self.live.on_changes(changes)
        for hear in self.listeners:
            try:
                hear(changes)
            except Exception:
                log.exception("a listener of alert changes failed; alerts go on regardless")

    def _guarded(self, what: str, run: Callable[[], list[Changes]]) -> list[Changes]:
        try:
            return run()
        except Exception:
            self.stats.alert_failures += 1
            log.exception("alert %s failed; events are stored regardless", what)
            return []


def _received(settled: Settled) -> list[int]:
    """When each accepted message arrived, in the order of `settled.accepted`."""
    return [m.received_ns for m, o in settled.outcomes if isinstance(o, Accepted)]
