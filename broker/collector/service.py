"""The collector's service: the loop, and the order in which a batch's result is carried out.

Each message is acknowledged only after what it produced is kept: a crash at any point leads
the broker to deliver the unacknowledged messages again, and the chain book and InfluxDB's
(measurement, tags, time) identity make the second delivery harmless.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker import points
from broker.alerts.changes import Changes
from broker.alerts.delivery import Notifier
from broker.alerts.engine import AlertEngine
from broker.alerts.operations import Operation
from broker.alerts.store import AlertStore
from broker.chain import ChainBook
from broker.collector import witnesses
from broker.collector.alerting import AlertBridge
from broker.collector.asks import Asks, Publish
from broker.collector.gc_tuning import collector_gc
from broker.collector.inbound import Inbound
from broker.collector.intake import Intake
from broker.collector.lifecycle import LifecycleFeed
from broker.collector.live_view import LiveView
from broker.collector.partials import PictureLimits
from broker.collector.pictures import PictureBatch, Pictures
from broker.collector.session import BrokerSession
from broker.collector.settle import Settled, count, settle
from broker.collector.stats import CollectorStats
from broker.collector.storage import Storage
from broker.config import CollectorConfig
from broker.evidence import EvidenceVault
from broker.evidence_gaps import EvidenceGaps, EvidencePlanner
from broker.home_assistant import wiring as home_assistant
from broker.influx import InfluxWriter, Record
from broker.ingest import Begun, Ingest, Keys, Rejected
from broker.signatures import SignaturePool
from broker.web.state import LiveState
from kernel.link import Link, Message
from kernel.units import MB
from protocol import topics

log = logging.getLogger("jaga.collector")


class Collector:
    """Wires the stages; runs the loop."""

    def __init__(
        self,
        config: CollectorConfig,
        keys: Keys,
        *,
        writer: InfluxWriter | None = None,
        live: LiveState | None = None,
        verify_workers: int | None = None,
        link: Link | None = None,
    ) -> None:
        """`verify_workers`: processes that check the signatures of big batches while the
        batch before is stored (None: the config's, else `default_verify_workers()`; 0: all
        in this process). `link`: the broker connection (None: paho, from the config)."""
        self.config = config
        self.stats = CollectorStats()
        self.live = live or LiveState()
        """What the guard-post page shows; fed below, never able to stop storage."""
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.session = BrokerSession(
            config.mqtt, self.stats, link, will=home_assistant.will_of(config)
        )
        self.inbox = self.session.inbox
        self.live_view = LiveView.for_collector(
            config, lambda topic, payload: self.session.publish(topic, payload)
        )
        """The wall's frames: relayed from the session's thread, never stored."""
        self.session.on_live = self.live_view.relay.on_frame
        self.intake = Intake(config, self.inbox)
        self.storage = Storage(config, self.stats, writer)
        self.storage.on_wait = self._beat
        self.chain = ChainBook(config.data_dir / "chain.sqlite3")
        self.ingest = Ingest(keys, self.chain)
        if verify_workers is None:
            verify_workers = config.verify_workers
        workers = default_verify_workers() if verify_workers is None else verify_workers
        self.verifier = SignaturePool(workers) if workers > 0 else None
        self.evidence = EvidenceVault(
            config.data_dir / "evidence",
            max_bytes=config.evidence_max_mb * MB,
            unit_max_bytes=config.evidence_unit_max_mb * MB,
            min_free_bytes=config.evidence_min_free_mb * MB,
        )
        self.pictures = Pictures(
            config.data_dir / "pictures.sqlite3", self.evidence, PictureLimits()
        )
        self.evidence_gaps = EvidenceGaps(
            self.evidence, EvidencePlanner(grace_ns=int(config.evidence_grace_s * 1e9))
        )
        self.asks = Asks(config, self.chain, self.evidence_gaps)
        notifier = Notifier(
            config.alerts.notify,
            config.data_dir / "notify.sqlite3",
            page_url=config.web.page_url if config.web is not None else None,
            pictures=self.evidence.path,  # an alarm's notification carries its still
        )
        notifier.start()
        engine = AlertEngine(
            config.alerts,
            AlertStore(config.data_dir / "alerts.sqlite3"),
            time.time_ns(),
            sites=frozenset(config.mqtt.sites) or None,
        )
        self.alerts = AlertBridge(
            engine, notifier, self.session, self.storage, self.live, self.stats
        )
        self.lifecycle = LifecycleFeed.for_registry(
            config.registry_dir, config.data_dir, frozenset(config.mqtt.sites) or None
        )
        """Enrolments, renewals, revocations into InfluxDB; refusals raise alerts (#19)."""
        self.home_assistant = home_assistant.attach(self)
        """HA's discovery, states and coded panels ([home_assistant]); None when off."""
        self.loop_heartbeat = time.monotonic()
        self._last_stats = time.monotonic()
        self._sites: dict[str, str] = {}

    def start(self) -> None:
        self.session.start()
        self.live_view.start()

    def wait_subscribed(self, timeout: float) -> bool:
        return self.session.subscribed.wait(timeout)

    def ack_from_web(self, alert_id: str, by: str) -> bool:
        return self.alerts.ack_from_web(alert_id, by)

    def operate(self, op: Operation) -> None:
        """Arm, disarm or bypass for the page (broker.alerts.operations); AlertError if refused."""
        self.alerts.operate(op)

    def _beat(self) -> None:
        self.loop_heartbeat = time.monotonic()

    # the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        """Take batches off the inbox until stop is set; replay the spool alongside."""
        drainer = threading.Thread(target=self.storage.drain, args=(stop,), name="spool-drain")
        drainer.start()
        try:
            with collector_gc():  # fewer garbage-collector passes: see gc_tuning.py
                self._loop(stop, on_tick)
        finally:
            stop.set()
            drainer.join(15)

    def _loop(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        ahead: _Ahead | None = None  # a big batch being checked while the one before is stored
        while not stop.is_set():
            batch = self.intake.top_up(self.intake.take_batch(stop, wait=ahead is None))
            self._beat()
            if on_tick is not None:  # service.units: the watchdog's documented stall hook
                on_tick()
            admitted = self._admit(batch) if batch else []
            pictures = [m for m in admitted if m.is_picture]
            admitted = [m for m in admitted if not m.is_picture]
            if not pictures and self._pipelined(admitted):
                # Parse it and start its signature checks; then finish the batch ahead (if
                # any) while they run. Batches are still finished — checked against the chain
                # book, stored, acknowledged, judged — one after the other, in order.
                begun = _Ahead(admitted, self._begin(admitted))
                if ahead is not None:
                    self._finish(ahead.batch, ahead.begun, stop)
                ahead = begun
            else:
                if ahead is not None:
                    self._finish(ahead.batch, ahead.begun, stop)
                    ahead = None
                if admitted:
                    self.process(admitted, stop)
                if pictures:  # after the events before them: most find their event stored
                    self._keep_pictures(pictures, stop)
            self._sweep_pictures(stop)
            self.alerts.turn(stop, self.chain, self._sites)
            if self.home_assistant is not None:
                self.home_assistant.turn(stop)
            self._witnessed(stop)
            self.lifecycle.turn(self.storage, self.alerts, stop)
            self._maybe_stats(stop)
        # Stopping with a batch begun: it is not acknowledged, so the broker delivers it again.

    def _pipelined(self, batch: list[Inbound]) -> bool:
        """Whether a batch is worth checking in the pool while the one before is stored: big
        enough (a lone alarm goes straight through)."""
        return self.verifier is not None and len(batch) >= self.verifier.min_batch

    def _admit(self, batch: list[Inbound]) -> list[Inbound]:
        """Units within their budget go now; the rest wait on disk (acknowledged)."""
        admitted, deferred = self.intake.admit(batch)
        self.session.ack_all(deferred)
        self.stats.deferred += len(deferred)
        return admitted

    def process(self, batch: list[Inbound], stop: threading.Event) -> None:
        """Check, store and acknowledge a batch of events, heartbeats and status messages."""
        if batch:
            self._finish(batch, self._begin(batch), stop)

    def _begin(self, batch: list[Inbound]) -> Begun:
        """Parse a batch and start checking its signatures (topics were taken apart on arrival)."""
        pairs = [(m.topic, m.payload) for m in batch]
        return self.ingest.begin_batch(pairs, self.verifier, [m.where for m in batch])

    def _finish(self, batch: list[Inbound], begun: Begun, stop: threading.Event) -> None:
        """Carry a checked batch out: store → vouch and judge → commit the chain → publish →
        acknowledge. Everything before the commit is done again, harmlessly, if a crash makes
        the broker redeliver the batch (the vault and the alert engine skip what they did)."""
        settled = settle(list(zip(batch, self.ingest.finish_batch(begun), strict=True)))
        if not self.storage.store(settled.points, stop):
            self.chain.rollback()
            return  # unacknowledged: the broker delivers them again
        now = time.time_ns()
        self._sites.update(settled.sites)
        pictures = self._vouch(settled, now)
        self._camera_events(settled)
        changes = self.alerts.judge(settled)
        gaps = self.chain.commit(now)
        changes += self.alerts.on_gaps(gaps, self._sites, now)
        if not self.storage.store(self._gap_points(gaps, now) + pictures.points, stop):
            return  # stopping with InfluxDB and the spool full: redelivered after the restart
        for msg in settled.accepted:
            self.live.on_message(msg)
        if self.home_assistant is not None:
            self.home_assistant.bridge.on_messages(settled.accepted)
        publishes = self.asks.on_heartbeats(settled.heartbeats, now)
        publishes += [_dead_letter(m.received_ns, r) for m, r in settled.rejected]
        self._publish(publishes, changes, stop)
        self._after_pictures(pictures, stop)
        self.session.ack_all(batch)
        self.intake.done(batch)
        count(self.stats, settled.outcomes)

    def _vouch(self, settled: Settled, now: int) -> PictureBatch:
        """Record what the stored events signed; pictures that waited for them move on."""
        for v in settled.vouches:
            self.evidence.vouch(v.event, v.sha256s, v.seq)
        if not settled.vouches:
            return PictureBatch()
        return self.pictures.on_vouched([v.event for v in settled.vouches], now)

    def _keep_pictures(self, msgs: list[Inbound], stop: threading.Event) -> None:
        """Chunks are kept durably, then acknowledged at once (never held for their picture)."""
        out = self.pictures.keep(msgs, time.time_ns())
        if not self.storage.store(out.points, stop):
            return  # stopping: the chunks are kept; acknowledged after the restart's redelivery
        self._after_pictures(out, stop)
        self.session.ack_all(msgs)
        self.intake.done(msgs)

    def _after_pictures(self, out: PictureBatch, stop: threading.Event) -> None:
        for p in out.stored:
            self.live.on_picture(p.event.event_id, p.sha256, p.event.site, p.event.device, p.role)
            if self.home_assistant is not None:
                self.home_assistant.bridge.on_picture(
                    p.event.site, p.event.device, p.sha256, p.role
                )
        self.stats.pictures += len(out.stored)
        self._stills_stored(out)
        self.stats.evidence_refused += len(out.refused)
        changes = self.alerts.evidence_refused(out.refused) if out.refused else []
        changes += self.alerts.integrity([r for _, r in out.rejected if r.is_integrity])
        letters = [_dead_letter(m.received_ns if m else time.time_ns(), r) for m, r in out.rejected]
        self._publish(letters, changes, stop)

    def _camera_events(self, settled: Settled) -> None:
        """Which trigger each stored camera event's pictures show: a notification of an alarm
        owes its trigger's still (never stops storage)."""
        try:
            self.alerts.notifier.camera_events(settled.accepted)
        except Exception:
            self.stats.alert_failures += 1
            log.exception("notification pictures failed; events are stored regardless")

    def _stills_stored(self, out: PictureBatch) -> None:
        """Stills now in the evidence vault go to the notifications that owe them."""
        if not out.stored:
            return
        try:
            self.alerts.notifier.pictures_stored(
                [(p.event.event_id, p.sha256, p.role) for p in out.stored]
            )
        except Exception:
            self.stats.alert_failures += 1
            log.exception("notification pictures failed; pictures are kept regardless")

    def _witnessed(self, stop: threading.Event) -> None:
        """Witnesses' cosignatures and fork reports waiting now: stored, alarmed, acknowledged."""
        msgs: list[Message] = []
        while len(msgs) < 500:
            try:
                msgs.append(self.session.witnessed.get_nowait())
            except queue.Empty:
                break
        if not msgs:
            return
        out = witnesses.take([(m.topic, m.payload) for m in msgs], time.time_ns())
        if not self.storage.store(out.points, stop):
            return  # stopping: unacknowledged, the broker delivers them again
        self._publish([], self.alerts.integrity(out.alarms), stop)
        for m in msgs:
            if m.qos > 0:
                self.session.link.ack(m.mid, m.qos)
        self.stats.cosignatures += out.cosignatures

    def _sweep_pictures(self, stop: threading.Event) -> None:
        """Half-done pictures whose time is up are given up on every turn (not only when
        another chunk comes)."""
        if self.pictures.sweep(time.time_ns()):
            self.stats.pictures_dropped = self.pictures.dropped

    def _publish(
        self, publishes: list[Publish], changes: list[Changes], stop: threading.Event
    ) -> None:
        """Alerts first (retained, stored, notified), then dead letters and asks."""
        for one in changes:
            self.alerts.emit(one, stop)
        for p in publishes:
            self.session.publish(p.topic, p.payload, qos=p.qos, retain=p.retain)
        self.stats.resend_requests = self.asks.requests

    def _gap_points(self, gaps: list[tuple[str, int, int, str]], now: int) -> list[Record]:
        return [
            points.gap_point(self._sites.get(d, "unknown"), d, first, last, change, now)
            for d, first, last, change in gaps
        ]

    def _maybe_stats(self, stop: threading.Event) -> None:
        now = time.monotonic()
        if now - self._last_stats < self.config.stats_interval_s:
            return
        self._last_stats = now
        s = self.stats
        try:
            gaps = self.evidence_gaps.refresh(time.time_ns())
        except Exception:
            log.exception("evidence gap check failed; events are stored regardless")
            gaps = None
        figures = {
            "received": s.received,
            "stored_events": s.stored_events,
            "duplicates": s.duplicates,
            "rejected": s.rejected,
            "integrity": s.integrity,
            "store_failures": s.store_failures,
            "refused_points": s.refused_points,
            "spool_batches": len(self.storage.spool),
            "spool_bytes": self.storage.spool.bytes,
            "deferred": s.deferred,
            "backlog": len(self.intake.backlog),
            "inbox": self.inbox.qsize(),
            "evidence_missing": gaps.events if gaps is not None else -1,
            "pictures_dropped": self.pictures.dropped,
            "evidence_refused": s.evidence_refused,
            "evidence_bytes": self.evidence.kept_bytes,
        }
        self.storage.store([points.collector_point(self.config.mqtt.client_id, figures)], stop)

    def close(self) -> None:
        self.live_view.stop()
        if self.home_assistant is not None:
            self.home_assistant.close()
        self.session.close()
        if self.verifier is not None:
            self.verifier.close()
        self.storage.close()
        self.chain.close()
        self.alerts.notifier.stop(5)
        self.alerts.engine.store.close()
        self.pictures.close()
        self.evidence.close()
        self.intake.close()


@dataclass(frozen=True, slots=True)
class _Ahead:
    batch: list[Inbound]
    begun: Begun


def _dead_letter(received_ns: int, r: Rejected) -> Publish:
    log.warning("dead letter from %s: %s: %s", r.topic[:120], r.reason.value, r.detail[:200])
    return Publish(topics.DEADLETTER, r.dead_letter(received_ns).to_json())


def default_verify_workers(cores: int | None = None) -> int:
    """Signature-checking processes beside the collector when collector.toml does not say
    (verify_workers): one per core but one (the collector's own thread and its MQTT thread
    keep one busy), at most 4; none on one core."""
    return max(0, min(4, (cores or os.cpu_count() or 1) - 1))
