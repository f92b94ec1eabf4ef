"""The collector service: MQTT in (persistent session, manual ack), InfluxDB out, in batches.

Each message is acknowledged only after what it produced is written: a crash at any point
leads the broker to deliver the unacknowledged messages again, and the ChainBook and
InfluxDB's (measurement, tags, time) identity make the second delivery harmless.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from influxdb_client import Point
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker import points
from broker.alerts.engine import AlertEngine, Changes
from broker.alerts.lifecycle import AlertError
from broker.alerts.notify import Notifier
from broker.alerts.store import AlertStore
from broker.chain import ChainBook
from broker.config import CollectorConfig
from broker.diskqueue import DiskQueue, Item, QueueFull
from broker.evidence import EvidenceStore
from broker.evidence_gaps import EvidenceGaps, EvidencePlanner
from broker.influx import InfluxWriter, Record, StoreUnavailable, to_lines
from broker.influx import Rejected as InfluxRefused
from broker.ingest import (
    Accepted,
    Begun,
    Duplicate,
    Ingest,
    Keys,
    Outcome,
    Reason,
    Rejected,
    SignaturePool,
)
from broker.ratelimit import UnitBudget
from broker.resend import ResendPlanner
from broker.web.state import LiveState
from protocol import topics
from protocol.commands import Resend, load_pem_key, sign_command
from protocol.models import Event, Heartbeat, Status, WireError
from protocol.snapshot import Reassembler, unpack

log = logging.getLogger("jaga.collector")

CHANNELS = (
    topics.Channel.EVENT,
    topics.Channel.HEARTBEAT,
    topics.Channel.STATUS,
    topics.Channel.SNAPSHOT,
)
PICTURE_TIMEOUT_NS = 120 * 1_000_000_000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ns: int
    backlog: Item | None = None
    """Set when the message comes from the rate-limit backlog (already acknowledged)."""


@dataclass
class CollectorStats:
    received: int = 0
    stored_events: int = 0
    duplicates: int = 0
    rejected: int = 0
    integrity: int = 0
    batches: int = 0
    store_failures: int = 0
    refused_points: int = 0
    resend_requests: int = 0
    deferred: int = 0
    pictures: int = 0
    alerts: int = 0
    alert_failures: int = 0
    commands_refused: int = 0
    connected: bool = False
    last_error: str | None = None
    by_reason: dict[str, int] = field(default_factory=dict)


class Collector:
    """Wires the MQTT session, the ingest logic, the chain book and the InfluxDB writer."""

    def __init__(
        self,
        config: CollectorConfig,
        keys: Keys,
        *,
        writer: InfluxWriter | None = None,
        live: LiveState | None = None,
        verify_workers: int | None = None,
    ) -> None:
        """`verify_workers`: processes that check the signatures of big batches while the
        batch before is stored (None: the config's, else `default_verify_workers()`; 0: all
        in this process)."""
        self.config = config
        self.live = live or LiveState()
        """What the guard-post page shows; fed below, never able to stop storage."""
        self.web_acks: queue.Queue[tuple[str, str, Future[bool]]] = queue.Queue()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.chain = ChainBook(config.data_dir / "chain.sqlite3")
        self.ingest = Ingest(keys, self.chain)
        if verify_workers is None:
            verify_workers = config.verify_workers
        workers = default_verify_workers() if verify_workers is None else verify_workers
        self.verifier = SignaturePool(workers) if workers > 0 else None
        self.writer = writer or InfluxWriter(config.influx, attempts=2)
        self.spool_path = config.data_dir / "spool.sqlite3"
        self.spool = DiskQueue(self.spool_path, config.spool_max_mb * 1024 * 1024)
        self.backlog = DiskQueue(
            config.data_dir / "backlog.sqlite3", config.backlog_max_mb * 1024 * 1024
        )
        self.budget = UnitBudget(config.unit_rate_per_s, config.unit_burst)
        self._waiting: dict[str, int] = {}
        """Messages of each unit waiting in the backlog: its new ones queue behind them."""
        for item in self.backlog.peek(len(self.backlog)):
            unit = _unit_of(item.meta)
            self._waiting[unit] = self._waiting.get(unit, 0) + 1
        self.evidence = EvidenceStore(config.data_dir / "evidence")
        self.evidence_gaps = EvidenceGaps(
            self.evidence, EvidencePlanner(grace_ns=int(config.evidence_grace_s * 1e9))
        )
        self.alerts = AlertEngine(
            config.alerts,
            AlertStore(config.data_dir / "alerts.sqlite3"),
            time.time_ns(),
            sites=frozenset(config.mqtt.sites) or None,
        )
        self.notifier = Notifier(config.alerts.notify, config.data_dir / "notify.sqlite3")
        self.notifier.start()
        self._alert_tick = 0.0
        self._recovered = False
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.pictures = Reassembler()
        self._held: dict[tuple[str, str], tuple[int, list[Inbound]]] = {}
        self._spool_wake = threading.Event()
        self._last_stats = time.monotonic()
        self.resend = ResendPlanner()
        self._signer = _command_signer(config)
        self.stats = CollectorStats()
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.loop_heartbeat = time.monotonic()
        self._client = self._make_client()
        self._subscribed = threading.Event()
        self._sites: dict[str, str] = {}

    def _make_client(self) -> mqtt.Client:
        m = self.config.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=m.client_id, protocol=mqtt.MQTTv5
        )
        client.manual_ack_set(True)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        if m.tls is not None:
            for name, path in (("ca", m.tls.ca), ("cert", m.tls.cert), ("key", m.tls.key)):
                if not path.is_file():
                    raise FileNotFoundError(2, f"mqtt.tls.{name} does not exist", str(path))
            client.tls_set(ca_certs=str(m.tls.ca), certfile=str(m.tls.cert), keyfile=str(m.tls.key))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # MQTT side ---------------------------------------------------------------------------

    def start(self) -> None:
        m = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = m.session_expiry_s
        props.ReceiveMaximum = m.receive_maximum
        self._client.connect_async(
            m.host, m.port, keepalive=m.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.stats.last_error = f"broker refused the collector: {reason}"
            log.error("%s", self.stats.last_error)
            return
        self.stats.connected = True
        resumed = bool(getattr(flags, "session_present", False))
        log.info("connected to broker (session %s)", "resumed" if resumed else "new")
        wanted = self._filters()
        if resumed:  # a session kept from another config (other sites, shared or not)
            stale = sorted(set(self._filters(every=True)) - set(wanted))
            if stale:
                client.unsubscribe(stale)
        client.subscribe([(f, 1) for f in wanted])

    def _filters(self, *, every: bool = False) -> list[str]:
        """What this collector subscribes to: its sites' messages and operators' commands.
        every=True: all the filters any collector config could have left in a session."""
        m = self.config.mqtt
        if every:
            return [
                *topics.collector_filters(CHANNELS, shared=True),
                *topics.collector_filters(CHANNELS, shared=False),
                *topics.site_command_filters(),
            ]
        sites = tuple(m.sites)
        return [
            *topics.collector_filters(CHANNELS, shared=m.shared, sites=sites),
            *topics.site_command_filters(sites),
        ]

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        bad = [str(c) for c in codes if c.is_failure]
        if bad:
            log.error("subscription refused by the broker: %s", ", ".join(bad))
            return
        log.info("subscribed to %s", ", ".join(self._filters()))
        self._subscribed.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self.stats.connected:
            log.warning("disconnected from broker: %s; reconnecting", reason)
        self.stats.connected = False

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if topics.parse_site_command(msg.topic) is not None:
            # Operators' arm/disarm/ack: handled on the main loop, acknowledged at once.
            self.commands.put((msg.topic, bytes(msg.payload)))
            if msg.qos > 0:
                self._client.ack(msg.mid, msg.qos)
            return
        self.inbox.put(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time_ns()))

    # processing --------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        """Take batches off the inbox until stop is set; replay the spool alongside."""
        drainer = threading.Thread(target=self.drain_spool, args=(stop,), name="spool-drain")
        drainer.start()
        try:
            self._loop(stop, on_tick)
        finally:
            stop.set()
            drainer.join(15)

    def _loop(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        ahead: _Ahead | None = None  # a big batch being checked while the one before is stored
        while not stop.is_set():
            batch = self._take_batch(stop, wait=ahead is None)
            if ahead is None or not ahead.backlogged:  # never take a backlog item twice
                batch = self._top_up(batch)
            self.loop_heartbeat = time.monotonic()
            if on_tick is not None:  # service.units: the watchdog's documented stall hook
                on_tick()
            admitted = self._admit(batch, stop) if batch else []
            if self._pipelined(admitted):
                # Parse it and start its signature checks; then store the batch ahead (if any)
                # while they run. Batches are still finished — checked against the chain
                # book, stored, acknowledged, judged — one after the other, in order.
                begun = _Ahead(
                    admitted, self.ingest.begin_batch(_messages(admitted), self.verifier)
                )
                if ahead is not None:
                    self._finish(ahead.batch, ahead.begun, stop)
                ahead = begun
            else:
                if ahead is not None:
                    self._finish(ahead.batch, ahead.begun, stop)
                    ahead = None
                if admitted:
                    self.process(admitted, stop)
            self._alerting(stop)
        # Stopping with a batch begun: it is not acknowledged, so the broker delivers it again.

    def _pipelined(self, batch: list[Inbound]) -> bool:
        """Whether a batch is worth checking in the pool while the one before is stored: big
        enough (a lone alarm goes straight through) and no picture chunk (pictures are
        matched to the events stored before them)."""
        return (
            self.verifier is not None
            and len(batch) >= self.verifier.min_batch
            and not any("/snapshot/" in m.topic for m in batch)
        )

    def _take_batch(self, stop: threading.Event, *, wait: bool = True) -> list[Inbound]:
        cfg = self.config.influx
        try:  # with a backlog waiting (or a batch begun), never sit idle on an empty inbox
            if not wait:
                first = self.inbox.get_nowait()
            else:
                first = self.inbox.get(timeout=0.01 if len(self.backlog) else 0.5)
        except queue.Empty:
            return []
        batch = [first]
        # Take what is already waiting and write at once: a lone alarm does not wait for
        # company, and under load batches grow by themselves while a write is in flight.
        # flush_ms only bounds how long a batch may keep growing.
        deadline = time.monotonic() + cfg.flush_ms / 1000
        while len(batch) < cfg.batch_max and time.monotonic() < deadline:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _top_up(self, batch: list[Inbound]) -> list[Inbound]:
        """Spare room in a batch goes to the backlog of units that were over their budget."""
        room = self.config.influx.batch_max // 2 - len(batch)
        if room <= 0 or not len(self.backlog):
            return batch
        items = self.backlog.peek(room)
        return batch + [Inbound(i.meta, i.body, 0, 0, i.created_ns, i) for i in items]

    def _unbacklog(self, items: list[Item]) -> None:
        self.backlog.remove(items)
        for item in items:
            unit = _unit_of(item.meta)
            self._waiting[unit] = max(0, self._waiting.get(unit, 0) - 1)

    def _admit(self, batch: list[Inbound], stop: threading.Event) -> list[Inbound]:
        """Units within their budget go now; the rest wait on disk (acknowledged) for spare room."""
        now = time.time_ns()
        admitted: list[Inbound] = []
        deferred: list[Inbound] = []
        for m in batch:
            unit = _unit_of(m.topic)
            if m.backlog is not None or (
                self._waiting.get(unit, 0) == 0 and self.budget.take(unit, now)
            ):
                admitted.append(m)
            else:  # over budget, or behind its own earlier messages: keep the unit in order
                deferred.append(m)
        if not deferred:
            return admitted
        try:
            self.backlog.put_many([(m.topic, m.payload, 1) for m in deferred])
        except QueueFull as exc:
            log.error("backlog full (%s): serving the flooding unit in line", exc)
            return batch
        for m in deferred:
            unit = _unit_of(m.topic)
            self._waiting[unit] = self._waiting.get(unit, 0) + 1
            if m.qos > 0:
                self._client.ack(m.mid, m.qos)
        self.stats.deferred += len(deferred)
        log.warning("%d messages over their unit's budget wait in the backlog", len(deferred))
        return admitted

    def process(self, batch: list[Inbound], stop: threading.Event) -> None:
        """Store a batch (InfluxDB, else the disk spool), then acknowledge it."""
        if not batch:
            return
        snapshots = [m for m in batch if "/snapshot/" in m.topic]
        if snapshots:
            batch = [m for m in batch if "/snapshot/" not in m.topic]
            self._pictures(snapshots, stop)
        if not batch:
            return
        self._finish(batch, self.ingest.begin_batch(_messages(batch), self.verifier), stop)

    def _finish(self, batch: list[Inbound], begun: Begun, stop: threading.Event) -> None:
        """Check a begun batch against the chain book, store it, then acknowledge it."""
        outcomes = list(zip(batch, self.ingest.finish_batch(begun), strict=True))
        if not self._store(self._points(outcomes), stop):
            self.chain.rollback()
            return  # unacknowledged: the broker delivers them again
        now = time.time_ns()
        for _, o in outcomes:
            if isinstance(o, Accepted):
                self.live.on_message(o.message)
        alert_changes = self._judge(outcomes)
        gap_changes = self.chain.commit(now)
        gap_points = [
            points.gap_point(self._sites.get(d, "unknown"), d, first, last, change, now)
            for d, first, last, change in gap_changes
        ]
        if gap_changes:
            alert_changes += self._guarded(
                "gaps",
                lambda: [
                    self.alerts.on_gap(self._sites.get(d, "unknown"), d, a, b, c, now)
                    for d, a, b, c in gap_changes
                ],
            )
        if gap_points:
            self._store(gap_points, stop)
        self._ask_for_missing(outcomes, now)
        for changes in alert_changes:
            self._emit(changes, stop)
        self._dead_letters(outcomes)
        for m, _ in outcomes:
            if m.qos > 0 and m.backlog is None:
                self._client.ack(m.mid, m.qos)
        self._unbacklog([m.backlog for m, _ in outcomes if m.backlog is not None])
        self._count(outcomes)
        self._maybe_stats(stop)

    def _store(self, pts: Sequence[Record], stop: threading.Event) -> bool:
        """Durably keep pts; False only when stopping while InfluxDB and the spool are full."""
        if not pts:
            return True
        if not len(self.spool):
            try:
                self.writer.write(pts)
                return True
            except InfluxRefused as exc:
                self._write_one_by_one(pts, exc)
                return True
            except StoreUnavailable as exc:
                self.stats.store_failures += 1
                self.stats.last_error = str(exc)
                log.error("InfluxDB unavailable (%s): spooling batches to %s", exc, self.spool_path)
        lines = to_lines(pts)
        while True:
            try:
                self.spool.put("lines", lines, len(pts))
                self._spool_wake.set()
                return True
            except QueueFull as exc:
                log.error("spool full (%s): holding messages unacknowledged in the broker", exc)
                self.loop_heartbeat = time.monotonic()  # waiting on purpose: a restart won't help
                if stop.wait(1.0):
                    return False

    # alerting ----------------------------------------------------------------------------

    def _judge(self, outcomes: list[tuple[Inbound, Outcome]]) -> list[Changes]:
        """Run the alert rules over a stored batch; an alert bug never stops storage."""

        def run() -> list[Changes]:
            with self.alerts.batch() as changes:
                for m, o in outcomes:
                    if isinstance(o, Accepted):
                        msg = o.message
                        if isinstance(msg, Event):
                            self.alerts.on_event(msg, m.received_ns)
                        elif isinstance(msg, Heartbeat):
                            self.alerts.on_heartbeat(msg, m.received_ns)
                        else:
                            self.alerts.on_status(msg, m.received_ns)
                    elif isinstance(o, Rejected) and o.is_integrity:
                        self.alerts.on_integrity(o, m.received_ns)
            return [changes]

        return self._guarded("rules", run)

    def _guarded(self, what: str, run: Callable[[], list[Changes]]) -> list[Changes]:
        try:
            return run()
        except Exception:
            self.stats.alert_failures += 1
            log.exception("alert %s failed; events are stored regardless", what)
            return []

    def _emit(self, changes: Changes, stop: threading.Event) -> None:
        """Publish (retained), store and notify what the alert engine decided, then confirm."""
        if not changes.outbox_id and not changes.messages() and not changes.points:
            return
        self.live.on_changes(changes)
        infos = [
            self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
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
        self._store([p.to_point() for p in changes.points], stop)
        self.notifier.submit(changes.notifications)
        if all(i.rc == mqtt.MQTT_ERR_SUCCESS for i in infos):
            self.alerts.confirm(changes)
        self.stats.alerts += len(changes.alerts)

    def _alerting(self, stop: threading.Event) -> None:
        """About once a second: recover after a restart, operators' commands, timed rules."""
        now_mono = time.monotonic()
        if not self._recovered and self._subscribed.is_set():
            self._recovered = True
            self._recover(stop)
        while True:
            try:
                alert_id, by, done = self.web_acks.get_nowait()
            except queue.Empty:
                break
            try:
                changes = self.alerts.ack(alert_id, by, time.time_ns())
            except AlertError as exc:
                done.set_exception(exc)
                continue
            self._emit(changes, stop)
            done.set_result(True)
        while True:
            try:
                topic, payload = self.commands.get_nowait()
            except queue.Empty:
                break
            self._command(topic, payload, stop)
        if now_mono - self._alert_tick >= 1.0:
            self._alert_tick = now_mono
            for changes in self._guarded("tick", lambda: [self.alerts.tick(time.time_ns())]):
                self._emit(changes, stop)

    def ack_from_web(self, alert_id: str, by: str) -> bool:
        """The guard post's Acknowledge (a web thread): done on the collector's own thread."""
        done: Future[bool] = Future()
        self.web_acks.put((alert_id, by, done))
        return done.result(timeout=10)

    def _recover(self, stop: threading.Event) -> None:
        """Publish what a crash may have left unpublished, and the retained truth."""
        now = time.time_ns()
        for changes in self._guarded("recovery", self.alerts.pending):
            self._emit(changes, stop)
        snapshot = self.alerts.snapshot(now)
        self.live.on_changes(snapshot)
        for m in snapshot.messages():
            self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
        site_of = dict(self._sites)
        for changes in self._guarded(
            "gap sync", lambda: [self.alerts.sync_gaps(self.chain.gaps(), site_of, now)]
        ):
            self._emit(changes, stop)

    def _command(self, topic: str, payload: bytes, stop: threading.Event) -> None:
        parsed = topics.parse_site_command(topic)
        if parsed is None:  # only site commands are queued here
            return
        site, name = parsed
        try:
            changes = self.alerts.command(site, name, payload, time.time_ns())
        except AlertError as exc:
            log.warning("command %s refused: %s", topic, exc)
            self.stats.commands_refused += 1
            return
        except Exception:
            log.exception("command %s failed", topic)
            return
        log.info("command %s carried out", topic)
        self._emit(changes, stop)

    def _pictures(self, msgs: list[Inbound], stop: threading.Event) -> None:
        """Chunks become whole pictures; a chunk is acknowledged once its picture is stored."""
        now = time.time_ns()
        pts: list[Point] = []
        acks: list[Inbound] = []
        rejected: list[tuple[Inbound, Rejected]] = []
        for m in msgs:
            try:
                where = topics.parse_device_topic(m.topic)
                header, _ = unpack(m.payload)
                key = (header.event, header.sha256)
                since, held = self._held.setdefault(key, (now, []))
                held.append(m)
                done = self.pictures.feed(where.arg or "", m.payload)
            except (topics.TopicError, WireError) as exc:
                self._drop_held(m)
                reason = Reason.HASH if "hashes to" in str(exc) else Reason.PAYLOAD
                r = Rejected(m.topic, reason, str(exc), m.payload[:2048], size=len(m.payload))
                rejected.append((m, r))
                acks.append(m)
                continue
            if done is None:
                continue
            sha = self.evidence.put(
                done.data, site=where.site, device=where.device, event_id=done.event
            )
            self.live.on_picture(done.event, sha, where.site, where.device, done.role)
            acks.extend(self._held.pop((done.event, done.sha256), (0, []))[1])
            vouched = self.evidence.vouched(done.event, done.sha256)
            pts.append(points.picture_point(where.site, where.device, done, vouched, now))
            if vouched is False:
                r = Rejected(
                    m.topic,
                    Reason.NOT_VOUCHED,
                    f"picture {done.sha256} is not among the hashes event {done.event} signed",
                    b"",
                    where.site,
                    where.device,
                    event_id=done.event,
                    size=len(done.data),
                )
                rejected.append((m, r))
            self.stats.pictures += 1
        for m, r in rejected:
            pts.append(points.deadletter_point(r, m.received_ns))
            if r.is_integrity:
                pts.append(points.integrity_point(r, m.received_ns))
        for key, (since, held) in list(self._held.items()):
            if now - since > PICTURE_TIMEOUT_NS:
                log.error(
                    "picture %s of event %s incomplete after 120 s; giving up", key[1], key[0]
                )
                acks.extend(held)
                del self._held[key]
        if not self._store(pts, stop):
            return
        self._dead_letters(rejected)
        for m in acks:
            if m.qos > 0 and m.backlog is None:
                self._client.ack(m.mid, m.qos)
        self._unbacklog([m.backlog for m in acks if m.backlog is not None])

    def _drop_held(self, m: Inbound) -> None:
        for key, (_, held) in list(self._held.items()):
            if m in held:
                held.remove(m)
                if not held:
                    del self._held[key]

    def _ask_for_missing(self, outcomes: list[tuple[Inbound, Outcome]], now_ns: int) -> None:
        """Heartbeats say how far each unit got; ask again for what never arrived: events,
        and the pictures of stored events (broker.evidence_gaps)."""
        for _, o in outcomes:
            if not (isinstance(o, Accepted) and isinstance(o.message, Event | Heartbeat)):
                continue
            if isinstance(o.message, Event):
                if o.message.snapshot_sha256:
                    e = o.message
                    self._evidence_gaps(self.evidence_gaps.on_event, e.id, e.site, e.device, e.seq)
                continue
            hb = o.message
            gaps = [(g.first, g.last) for g in self.chain.gaps(hb.device)]
            for req in self.resend.on_heartbeat(
                hb.site, hb.device, hb.last_seq, self.chain.last_seq(hb.device), gaps, now_ns
            ):
                log.warning(
                    "%s/%s: seq %d..%d missing; asking the unit to send them again",
                    req.site,
                    req.device,
                    req.first_seq,
                    req.last_seq,
                )
                self._resend(req.site, req.device, req.first_seq, req.last_seq)
            asks = self._evidence_gaps(
                self.evidence_gaps.on_heartbeat, hb.device, hb.outbox_depth, now_ns
            )
            for ask in asks or []:
                log.warning(
                    "%s/%s seq %d: %d pictures of event %s missing; asking the unit to send "
                    "them again (attempt %d)",
                    ask.site,
                    ask.device,
                    ask.seq,
                    ask.missing,
                    ask.event_id,
                    ask.attempt,
                )
                self._resend(ask.site, ask.device, ask.seq, ask.seq)

    def _evidence_gaps(self, run: Callable[..., T], *args: Any) -> T | None:
        """Picture-gap bookkeeping never stops storage."""
        try:
            return run(*args)
        except Exception:
            log.exception("evidence gap check failed; events are stored regardless")
            return None

    def _resend(self, site: str, device: str, first_seq: int, last_seq: int) -> None:
        """A signed `resend` to a unit: events first..last again, and their pictures."""
        if self._signer is None:
            log.error("cannot sign a resend command: no [mqtt.tls] key")
            return
        key, cert_pem, by = self._signer
        cmd = Resend(by=by, ts=time.time_ns(), first_seq=first_seq, last_seq=last_seq)
        topic = topics.DeviceTopics(site, device).cmd("resend")
        self._client.publish(topic, sign_command(cmd, key, cert_pem), qos=1)
        self.stats.resend_requests += 1

    def _write_one_by_one(self, pts: Sequence[Record], exc: Exception) -> None:
        """InfluxDB refused the batch as malformed: keep every point it accepts."""
        log.error("InfluxDB refused a batch (%s); writing its %d points one by one", exc, len(pts))
        for p in pts:
            try:
                self.writer.write([p])
            except (InfluxRefused, StoreUnavailable) as one:
                self.stats.refused_points += 1
                line = p if isinstance(p, str) else p.to_line_protocol()
                log.error("point refused by InfluxDB: %s: %s", one, line[:300])

    def drain_spool(self, stop: threading.Event) -> None:
        """Replay spooled batches into InfluxDB, oldest first, while the service runs."""
        writer = InfluxWriter(self.config.influx, attempts=1)
        try:
            while not stop.is_set():
                items = self.spool.peek(1)
                if not items:
                    self._spool_wake.wait(1.0)
                    self._spool_wake.clear()
                    continue
                item = items[0]
                try:
                    writer.write(item.body, item.count)
                except StoreUnavailable:
                    stop.wait(2.0)
                    continue
                except InfluxRefused as exc:
                    log.error("spooled batch %d refused by InfluxDB (%s); dropped", item.id, exc)
                    self.stats.refused_points += item.count
                self.spool.remove([item])
                if not len(self.spool):
                    log.info("spool drained: InfluxDB has everything again")
        finally:
            writer.close()

    def _maybe_stats(self, stop: threading.Event) -> None:
        now = time.monotonic()
        if now - self._last_stats < self.config.stats_interval_s:
            return
        self._last_stats = now
        s = self.stats
        gaps = self._evidence_gaps(self.evidence_gaps.refresh, time.time_ns())
        figures = {
            "received": s.received,
            "stored_events": s.stored_events,
            "duplicates": s.duplicates,
            "rejected": s.rejected,
            "integrity": s.integrity,
            "store_failures": s.store_failures,
            "refused_points": s.refused_points,
            "spool_batches": len(self.spool),
            "spool_bytes": self.spool.bytes,
            "deferred": s.deferred,
            "backlog": len(self.backlog),
            "inbox": self.inbox.qsize(),
            "evidence_missing": gaps.events if gaps is not None else -1,
        }
        self._store([points.collector_point(self.config.mqtt.client_id, figures)], stop)

    def _points(self, outcomes: list[tuple[Inbound, Outcome]]) -> list[Record]:
        pts: list[Record] = []
        for m, o in outcomes:
            if isinstance(o, Accepted):
                self._sites[o.device] = o.site
                msg = o.message
                if isinstance(msg, Event):
                    assert o.digest is not None
                    pts.append(points.event_line(msg, o.digest, m.payload))
                    if msg.snapshot_sha256:
                        self.evidence.vouch(msg.id, msg.snapshot_sha256)
                elif isinstance(msg, Heartbeat):
                    pts.append(points.heartbeat_point(msg, m.received_ns))
                elif isinstance(msg, Status):
                    pts.append(points.status_point(msg, m.received_ns))
            elif isinstance(o, Rejected):
                pts.append(points.deadletter_point(o, m.received_ns))
                if o.is_integrity:
                    pts.append(points.integrity_point(o, m.received_ns))
        return pts

    def _dead_letters(self, outcomes: Sequence[tuple[Inbound, Outcome]]) -> None:
        for m, o in outcomes:
            if isinstance(o, Rejected):
                log.warning(
                    "dead letter from %s: %s: %s", m.topic[:120], o.reason.value, o.detail[:200]
                )
                self._client.publish(
                    topics.DEADLETTER, o.dead_letter(m.received_ns).to_json(), qos=1
                )

    def _count(self, outcomes: list[tuple[Inbound, Outcome]]) -> None:
        s = self.stats
        s.batches += 1
        s.received += len(outcomes)
        for m, o in outcomes:
            if isinstance(o, Accepted) and isinstance(o.message, Event):
                s.stored_events += 1
                e = o.message
                log.info(
                    "stored %s/%s seq=%d %s %s %s",
                    e.site,
                    e.device,
                    e.seq,
                    e.kind,
                    e.sensor,
                    e.state,
                )
            elif isinstance(o, Duplicate):
                s.duplicates += 1
            elif isinstance(o, Rejected):
                s.rejected += 1
                s.integrity += int(o.is_integrity)
                s.by_reason[o.reason.value] = s.by_reason.get(o.reason.value, 0) + 1
            del m

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        if self.verifier is not None:
            self.verifier.close()
        self.writer.close()
        self.chain.close()
        self.spool.close()
        self.notifier.stop(5)
        self.alerts.store.close()
        self.evidence.close()
        self.backlog.close()


@dataclass(frozen=True, slots=True)
class _Ahead:
    batch: list[Inbound]
    begun: Begun

    @property
    def backlogged(self) -> bool:
        return any(m.backlog is not None for m in self.batch)


def _messages(batch: list[Inbound]) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in batch]


def default_verify_workers(cores: int | None = None) -> int:
    """Signature-checking processes beside the collector when collector.toml does not say
    (verify_workers): one per core but one (the collector's own thread and its MQTT thread
    keep one busy), at most 4; none on one core."""
    return max(0, min(4, (cores or os.cpu_count() or 1) - 1))


def _unit_of(topic: str) -> str:
    """The unit a topic belongs to (jaga/v1/<site>/<device>/...), for its budget."""
    levels = topic.split("/", 4)
    return "/".join(levels[2:4]) if len(levels) >= 4 else topic


def _command_signer(
    config: CollectorConfig,
) -> tuple[ec.EllipticCurvePrivateKey, bytes, str] | None:
    """The collector's own key and certificate: units accept only signed commands."""
    tls = config.mqtt.tls
    if tls is None:
        return None
    try:
        cert_pem = tls.cert.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = load_pem_key(tls.key.read_bytes())
    except (OSError, ValueError) as exc:
        log.error("cannot load the collector's key for signing commands: %s", exc)
        return None
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return key, cert_pem, str(cns[0].value) if cns else ""
