"""The collector service: MQTT in (persistent session, manual ack), InfluxDB out, in batches.

Each message is acknowledged only after what it produced is written: a crash at any point
leads the broker to deliver the unacknowledged messages again, and the ChainBook and
InfluxDB's (measurement, tags, time) identity make the second delivery harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from influxdb_client import Point
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker import points
from broker.chain import ChainBook
from broker.config import CollectorConfig
from broker.influx import InfluxWriter, StoreUnavailable
from broker.ingest import Accepted, Duplicate, Ingest, Keys, Outcome, Rejected
from protocol import topics
from protocol.models import Event, Heartbeat, Status

log = logging.getLogger("jaga.collector")

CHANNELS = (topics.Channel.EVENT, topics.Channel.HEARTBEAT, topics.Channel.STATUS)


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ns: int


@dataclass
class CollectorStats:
    received: int = 0
    stored_events: int = 0
    duplicates: int = 0
    rejected: int = 0
    integrity: int = 0
    batches: int = 0
    store_failures: int = 0
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
    ) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.chain = ChainBook(config.data_dir / "chain.sqlite3")
        self.ingest = Ingest(keys, self.chain)
        self.writer = writer or InfluxWriter(config.influx)
        self.stats = CollectorStats()
        self.inbox: queue.Queue[Inbound] = queue.Queue()
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
        filters = topics.collector_filters(CHANNELS, shared=self.config.mqtt.shared)
        client.subscribe([(f, 1) for f in filters])

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        bad = [str(c) for c in codes if c.is_failure]
        if bad:
            log.error("subscription refused by the broker: %s", ", ".join(bad))
            return
        log.info(
            "subscribed to %s",
            ", ".join(topics.collector_filters(CHANNELS, shared=self.config.mqtt.shared)),
        )
        self._subscribed.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self.stats.connected:
            log.warning("disconnected from broker: %s; reconnecting", reason)
        self.stats.connected = False

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time_ns()))

    # processing --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Take batches off the inbox until stop is set."""
        while not stop.is_set():
            batch = self._take_batch(stop)
            self.loop_heartbeat = time.monotonic()
            if batch:
                self.process(batch, stop)

    def _take_batch(self, stop: threading.Event) -> list[Inbound]:
        cfg = self.config.influx
        try:
            first = self.inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + cfg.flush_ms / 1000
        while len(batch) < cfg.batch_max and not stop.is_set():
            try:
                batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def process(self, batch: list[Inbound], stop: threading.Event) -> None:
        """Store a batch and acknowledge it; on a store outage, retry until it goes."""
        outcomes = [(m, self.ingest.handle(m.topic, m.payload)) for m in batch]
        pts = self._points(outcomes)
        while True:
            try:
                self.writer.write(pts)
                break
            except StoreUnavailable as exc:
                self.stats.store_failures += 1
                self.stats.last_error = str(exc)
                log.error("InfluxDB write failed (%s); %d messages held, retrying", exc, len(batch))
                if stop.wait(2.0):
                    self.chain.rollback()
                    return  # unacknowledged: the broker delivers them again
        now = time.time_ns()
        gap_points = [
            points.gap_point(self._sites.get(d, "unknown"), d, first, last, change, now)
            for d, first, last, change in self.chain.commit(now)
        ]
        if gap_points:
            try:
                self.writer.write(gap_points)
            except StoreUnavailable as exc:
                log.warning("gap record not written: %s", exc)
        self._dead_letters(outcomes)
        for m, _ in outcomes:
            if m.qos > 0:
                self._client.ack(m.mid, m.qos)
        self._count(outcomes)

    def _points(self, outcomes: list[tuple[Inbound, Outcome]]) -> list[Point]:
        pts: list[Point] = []
        for m, o in outcomes:
            if isinstance(o, Accepted):
                self._sites[o.device] = o.site
                msg = o.message
                if isinstance(msg, Event):
                    assert o.digest is not None
                    pts.append(points.event_point(msg, o.digest, m.payload))
                elif isinstance(msg, Heartbeat):
                    pts.append(points.heartbeat_point(msg, m.received_ns))
                elif isinstance(msg, Status):
                    pts.append(points.status_point(msg, m.received_ns))
            elif isinstance(o, Rejected):
                pts.append(points.deadletter_point(o, m.received_ns))
                if o.is_integrity:
                    pts.append(points.integrity_point(o, m.received_ns))
        return pts

    def _dead_letters(self, outcomes: list[tuple[Inbound, Outcome]]) -> None:
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
        self.writer.close()
        self.chain.close()
