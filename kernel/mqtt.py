"""The one place that builds a paho MQTT client, and the Link over it (`PahoLink`).

Every client of Jaga's broker (unit, collector, operator CLI, self-test, devstack watch, bench)
speaks MQTT 5 with mutual TLS from the site CA; `make_client` sets that up once. paho types stay
here and in the few adapters that hold a client; the collector sees only `kernel.link.Link`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kernel.config import ClientTls
from kernel.link import LinkHandler, Message
from kernel.mqtt_stream import StreamClient


@dataclass(frozen=True, slots=True)
class Will:
    """What the broker publishes for us when we vanish without a goodbye (retained, QoS 1)."""

    topic: str
    payload: bytes


def make_client(
    tls: ClientTls | None,
    client_id: str,
    *,
    field: str = "tls",
    will: Will | None = None,
    manual_ack: bool = False,
    reconnect_delay_s: tuple[int, int] | None = None,
    max_inflight: int | None = None,
    max_queued: int | None = None,
    logger: logging.Logger | None = None,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """An MQTT 5 client with mutual TLS (CA, certificate, key), not yet connected.

    Args:
        tls: the files; None only for a loopback test broker without TLS.
        field: the config field the files came from, named when one is missing.
        will: published by the broker when the connection dies without a goodbye.
        manual_ack: inbound QoS 1 messages wait for `client.ack` (ack after the write).
        reconnect_delay_s: (min, max) back-off of the automatic reconnect.
        max_inflight: QoS 1 publishes in flight before paho queues.
        max_queued: messages paho queues beyond those (0: unlimited).
        logger: where paho's own log goes.
        client_class: mqtt.Client or a subclass (kernel.mqtt_stream.StreamClient).
    """
    client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=1, retain=True)
    if manual_ack:
        client.manual_ack_set(True)
    if reconnect_delay_s is not None:
        client.reconnect_delay_set(min_delay=reconnect_delay_s[0], max_delay=reconnect_delay_s[1])
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    if max_queued is not None:
        client.max_queued_messages_set(max_queued)
    if tls is not None:
        for name, path in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
            if not path.is_file():
                raise FileNotFoundError(2, f"{field}.{name} does not exist", str(path))
        client.tls_set(
            ca_certs=str(tls.ca),
            certfile=str(tls.cert),
            keyfile=str(tls.key),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if logger is not None:
        client.enable_logger(logger)
    return client


@dataclass(frozen=True, slots=True)
class Session:
    """Where to connect and how long the broker keeps our session while we are away."""

    host: str
    port: int
    keepalive_s: int
    session_expiry_s: int
    receive_maximum: int


class PahoLink:
    """A `kernel.link.Link` over a client from make_client (manual_ack=True), kept session."""

    def __init__(self, client: mqtt.Client, session: Session) -> None:
        self.client = client
        self.session = session
        self._handler: LinkHandler | None = None

    def start(self, handler: LinkHandler) -> None:
        self._handler = handler
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        if isinstance(c, StreamClient):
            c.sink = self._on_publish
        s = self.session
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        props.ReceiveMaximum = s.receive_maximum
        c.connect_async(
            s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props
        )
        c.loop_start()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def subscribe(self, filters: Sequence[str]) -> None:
        self.client.subscribe([(f, 1) for f in filters])

    def unsubscribe(self, filters: Sequence[str]) -> None:
        self.client.unsubscribe(list(filters))

    def ack(self, mid: int, qos: int) -> None:
        self.client.ack(mid, qos)

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages, in order; one write with a StreamClient."""
        if isinstance(self.client, StreamClient):
            self.client.ack_many(mids)
        else:
            for mid in mids:
                self.client.ack(mid, 1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # paho's thread -----------------------------------------------------------------------

    def _on_connect(
        self, _c: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        assert self._handler is not None
        if reason.is_failure:
            self._handler.on_refused(str(reason))
        else:
            self._handler.on_connected(bool(getattr(flags, "session_present", False)))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        assert self._handler is not None
        self._handler.on_subscribed([str(c) for c in codes if c.is_failure])

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        assert self._handler is not None
        self._handler.on_disconnected(str(reason))

    def _on_publish(self, topic: str, payload: bytes, qos: int, retain: bool, mid: int) -> None:
        """A StreamClient's plain QoS 1 PUBLISH (no MQTTMessage made for it)."""
        assert self._handler is not None
        self._handler.on_message(Message(topic, payload, qos, retain, mid))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        assert self._handler is not None
        self._handler.on_message(
            Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain, msg.mid)
        )
