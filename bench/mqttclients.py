"""paho clients the benchmarks connect with: mutual TLS, MQTT 5, as a unit or as an operator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from bench.site import Identity
from kernel.config import ClientTls
from kernel.mqtt import make_client

OnArrival = Callable[[int, str, bytes], None]
"""(arrival time.time_ns(), topic, payload), called on paho's network thread."""


class ConnectFailed(RuntimeError):
    pass


def tls_client(client_id: str, ident: Identity) -> mqtt.Client:
    """An MQTT 5 client with the identity's certificate, like the agent's and collector's."""
    tls = ClientTls(ca=ident.ca, cert=ident.cert, key=ident.key)
    return make_client(tls, client_id, max_inflight=1000)


class Session:
    """One connected client on its own network thread; subscriptions stamp arrivals."""

    def __init__(
        self,
        client_id: str,
        ident: Identity,
        port: int,
        *,
        filters: Sequence[str] = (),
        on_arrival: OnArrival | None = None,
    ) -> None:
        self.client = tls_client(client_id, ident)
        self.port = port
        self.filters = list(filters)
        self.on_arrival = on_arrival
        self._ready = threading.Event()
        self._error: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            self._error = f"refused: {rc}"
            self._ready.set()
            return
        if self.filters:
            client.subscribe([(f, 1) for f in self.filters])
        else:
            self._ready.set()

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _m: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        bad = [str(c) for c in codes if c.is_failure]
        if bad:
            self._error = f"subscription refused: {', '.join(bad)}"
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        if self.on_arrival is not None:
            self.on_arrival(now, msg.topic, bytes(msg.payload))

    def start(self, timeout: float = 15.0) -> Session:
        self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=True)
        self.client.loop_start()
        if not self._ready.wait(timeout) or self._error:
            self.stop()
            raise ConnectFailed(self._error or f"no CONNACK/SUBACK within {timeout} s")
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
