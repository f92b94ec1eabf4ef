"""The collector's broker session: the only paho user on the collector side.

A persistent MQTT 5 session (clean_start=False, a session expiry) with manual
acknowledgement: a message is acknowledged only when the service says it is stored. Inbound
messages are taken apart once (`Inbound.arrived`) and queued for the service's thread;
operators' site commands go to their own queue. Retained site commands are dropped: a
command is carried out when it is sent, never again when a collector (re)subscribes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker.collector.inbound import Inbound
from broker.collector.stats import CollectorStats
from broker.config import MqttConfig
from protocol import topics

log = logging.getLogger("jaga.collector")

CHANNELS = (
    topics.Channel.EVENT,
    topics.Channel.HEARTBEAT,
    topics.Channel.STATUS,
    topics.Channel.SNAPSHOT,
)


class BrokerSession:
    """Connect, subscribe (this collector's sites), take messages in, acknowledge, publish."""

    def __init__(self, config: MqttConfig, stats: CollectorStats) -> None:
        self.config = config
        self.stats = stats
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.subscribed = threading.Event()
        self.retained_commands_dropped = 0
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        m = self.config
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

    def start(self) -> None:
        m = self.config
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = m.session_expiry_s
        props.ReceiveMaximum = m.receive_maximum
        self._client.connect_async(
            m.host, m.port, keepalive=m.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    def ack(self, m: Inbound) -> None:
        """Tell the broker a message is ours now (stored, spooled, backlogged or kept)."""
        if m.needs_ack:
            self._client.ack(m.mid, m.qos)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish; False when paho refused it at once (e.g. not connected)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def filters(self, *, every: bool = False) -> list[str]:
        """What this collector subscribes to: its sites' messages and operators' commands.
        every=True: all the filters any collector config could have left in a session."""
        m = self.config
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

    # paho's thread -----------------------------------------------------------------------

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
        wanted = self.filters()
        if resumed:  # a session kept from another config (other sites, shared or not)
            stale = sorted(set(self.filters(every=True)) - set(wanted))
            if stale:
                client.unsubscribe(stale)
        client.subscribe([(f, 1) for f in wanted])

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        bad = [str(c) for c in codes if c.is_failure]
        if bad:
            log.error("subscription refused by the broker: %s", ", ".join(bad))
            return
        log.info("subscribed to %s", ", ".join(self.filters()))
        self.subscribed.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self.stats.connected:
            log.warning("disconnected from broker: %s; reconnecting", reason)
        self.stats.connected = False

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if topics.parse_site_command(msg.topic) is not None:
            # Operators' arm/disarm/ack: handled on the main loop, acknowledged at once.
            if msg.retain:
                self.retained_commands_dropped += 1
                log.warning(
                    "retained command on %s dropped: commands are carried out when sent, "
                    "never replayed from the broker's retained store",
                    msg.topic[:120],
                )
            else:
                self.commands.put((msg.topic, bytes(msg.payload)))
            if msg.qos > 0:
                self._client.ack(msg.mid, msg.qos)
            return
        self.inbox.put(
            Inbound.arrived(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time_ns())
        )
