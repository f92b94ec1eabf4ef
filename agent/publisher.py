"""The unit's MQTT link: drains the outbox in order, QoS 1, and marks rows delivered on PUBACK.

paho-mqtt stays inside this module. The link is started before the broker is reachable and
keeps reconnecting with backoff; nothing is handed to paho unless it is already in the outbox,
so a crash or a power cut loses no event, and every publish is retried until acknowledged.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import BrokerConfig
from agent.outbox import Outbox
from kernel.mqtt import Will, make_client

log = logging.getLogger("jaga.agent.publisher")

WINDOW = 256
"""Messages handed to paho and not yet acknowledged, at most."""

ACK_FLUSH_S = 0.05


@dataclass
class LinkStats:
    connected: bool = False
    connected_since: float | None = None
    last_error: str | None = None
    refused: int = 0
    refused_logged: int = 0
    published: int = 0
    acked: int = 0
    connects: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


CommandHandler = Callable[[str, bytes], None]


class Publisher:
    """Owns the paho client and the thread that moves outbox rows to the broker."""

    def __init__(
        self,
        broker: BrokerConfig,
        outbox: Outbox,
        *,
        client_id: str,
        will: Will,
        birth: Callable[[], tuple[str, bytes]],
        subscriptions: list[str],
        on_command: CommandHandler,
    ) -> None:
        self._broker = broker
        self._outbox = outbox
        self._birth = birth
        self._subscriptions = subscriptions
        self._on_command = on_command
        self.stats = LinkStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id
        self._early: dict[int, ReasonCode] = {}  # PUBACKs that beat the bookkeeping
        self._transient: set[int] = set()  # mids of messages not kept in the outbox
        self._acked: list[int] = []
        self._cursor = 0
        self._live_last: mqtt.MQTTMessageInfo | None = None
        self._client = self._make_client(client_id, will)
        self._thread = threading.Thread(target=self._drain, name="outbox-drain", daemon=True)
        self.drain_beat = time.monotonic()

    def _make_client(self, client_id: str, will: Will) -> mqtt.Client:
        client = make_client(
            self._broker.tls,
            client_id,
            field="broker.tls",
            will=will,
            reconnect_delay_s=(1, 30),
            max_inflight=WINDOW,
            max_queued=0,
            logger=logging.getLogger("jaga.agent.mqtt"),
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting (in the background) and draining; returns at once."""
        self._client.connect_async(
            self._broker.host,
            self._broker.port,
            keepalive=self._broker.keepalive_s,
            clean_start=True,
        )
        self._client.loop_start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush acknowledgements, say goodbye cleanly (the will then stays unpublished)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._flush_acks()
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    def rewind(self) -> None:
        """Look at the whole outbox again (rows were requeued behind the cursor)."""
        with self._lock:
            self._cursor = 0
        self._wake.set()

    def wake(self) -> None:
        """New rows are in the outbox."""
        self._wake.set()

    def publish_transient(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Send something that is not kept if it cannot go now (heartbeats, command results)."""
        if not self.stats.connected:
            return False
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        self._forget(info.mid)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_live(self, topic: str, payload: bytes) -> bool:
        """A live frame: QoS 0, never retained, never kept; dropped (False) while the link is
        down or the frame before is still on its way, so a slow uplink queues nothing."""
        if not self.stats.connected:
            return False
        last = self._live_last
        if last is not None and not last.is_published():
            return False
        info = self._client.publish(topic, payload, qos=0, retain=False)
        # paho confirms QoS 0 sends too, and mids wrap: never let a frame's confirmation be
        # taken for the PUBACK of an outbox row.
        self._forget(info.mid)
        ok = info.rc == mqtt.MQTT_ERR_SUCCESS
        self._live_last = info if ok else None
        return ok

    def _forget(self, mid: int) -> None:
        with self._lock:
            if self._early.pop(mid, None) is None:
                self._transient.add(mid)

    # paho callbacks (run on paho's network thread) --------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.stats.last_error = f"broker refused the connection: {reason}"
            log.error("%s", self.stats.last_error)
            return
        topic, payload = self._birth()
        self._forget(client.publish(topic, payload, qos=1, retain=True).mid)
        for sub in self._subscriptions:
            client.subscribe(sub, qos=1)
        self._live_last = None  # a frame lost with the old connection holds nothing up
        with self._lock:
            self._cursor = 0  # everything not acknowledged goes again, in order
        self.stats.connected = True
        self.stats.connected_since = time.monotonic()
        self.stats.connects += 1
        self.stats.last_error = None
        log.info("connected to %s:%s", self._broker.host, self._broker.port)
        self._wake.set()

    def _on_connect_fail(self, _client: mqtt.Client, _u: Any) -> None:
        self.stats.last_error = f"cannot reach broker {self._broker.host}:{self._broker.port}"
        log.warning("%s; retrying", self.stats.last_error)

    def _on_disconnect(
        self, _client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        was = self.stats.connected
        self.stats.connected = False
        self.stats.connected_since = None
        if self._stop.is_set():
            return
        if was:
            self.stats.last_error = f"disconnected: {reason}"
            log.warning("%s; events wait in the outbox", self.stats.last_error)
        else:
            self.stats.last_error = (
                f"the broker closed the connection before accepting us ({reason}): is this "
                "unit's certificate revoked or expired? (see the mqtt log line above)"
            )
            log.error("%s; events wait in the outbox", self.stats.last_error)

    def _on_publish(
        self, _client: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any
    ) -> None:
        # Called by paho with its own lock held: never take a lock here that is held while
        # calling into paho, or the two threads deadlock.
        with self._lock:
            row = self._inflight.pop(mid, None)
            if row is None:
                if mid in self._transient:
                    self._transient.discard(mid)
                else:
                    self._early[mid] = reason
                return
            self._settle_locked(row, reason)
        self._wake.set()

    def _settle_locked(self, row: int, reason: ReasonCode) -> None:
        if reason.is_failure:
            # Not authorised, too large, quota: keep the row; it goes again after reconnect.
            self.stats.refused += 1
            self.stats.last_error = f"broker refused message {row}: {reason}"
            if self.stats.refused_logged < self.stats.connects:  # once per connection
                self.stats.refused_logged = self.stats.connects
                log.error(
                    "%s; kept in the outbox (further refusals counted, not logged)",
                    self.stats.last_error,
                )
            return
        self._acked.append(row)
        self.stats.acked += 1

    def _on_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_command(msg.topic, bytes(msg.payload))
        except Exception:  # a bad command must not kill paho's thread
            log.exception("command on %s failed", msg.topic)

    # drain thread ------------------------------------------------------------------------

    def _drain(self) -> None:
        last_flush = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(timeout=ACK_FLUSH_S)
            self._wake.clear()
            self.drain_beat = time.monotonic()
            try:
                if time.monotonic() - last_flush >= ACK_FLUSH_S:
                    self._flush_acks()
                    last_flush = time.monotonic()
                if self.stats.connected:
                    self._send_more()
            except sqlite3.Error as exc:  # a full disk must not kill the link
                self.stats.last_error = f"outbox: {exc}"
                log.error("outbox error in the link (%s); retrying", exc)
                self._stop.wait(1.0)

    def _send_more(self) -> None:
        with self._lock:
            room = WINDOW - len(self._inflight)
            cursor = self._cursor
            busy = set(self._inflight.values()) | set(self._acked)
        if room <= 0:
            return
        rows = self._outbox.pending(after_id=cursor, limit=room + len(busy))
        for row in rows:
            if row.id in busy:  # paho still holds it and re-sends it itself after a reconnect
                cursor = row.id
                continue
            if room <= 0 or not self.stats.connected:
                break
            info = self._client.publish(row.topic, row.payload, qos=row.qos)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("publish of row %s failed: %s", row.id, mqtt.error_string(info.rc))
                break
            with self._lock:
                early = self._early.pop(info.mid, None)
                if early is None:
                    self._inflight[info.mid] = row.id
                else:
                    self._settle_locked(row.id, early)
                self._cursor = cursor = row.id
            room -= 1
            self.stats.published += 1

    def _flush_acks(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        if not acked:
            return
        try:
            self._outbox.mark_delivered(acked)
        except sqlite3.Error:
            with self._lock:  # keep them: recorded once the disk has room again
                self._acked = acked + self._acked
            raise
