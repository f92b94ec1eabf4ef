"""What the demo (and the benchmarks) see from the control room: an operator's MQTT view of a
site's events and alerts, and a local endpoint that receives the alert notifications."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from kernel.config import ClientTls
from kernel.mqtt import make_client
from protocol import models, topics
from protocol.alerting import Alert
from protocol.models import Event


@dataclass
class SiteWatch:
    """Events (id -> unit time) and every alert message with the time it arrived."""

    registry: Path
    port: int
    site: str
    operator: str = "watch"
    """Its own identity: the broker binds client ids to certificates, so a watch holding the
    certificate of the operator who arms would kick (and be kicked by) every CLI command."""
    event_ts: dict[str, int] = field(default_factory=dict)
    alerts: list[tuple[int, Alert]] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)
    """Alerts whose retained message was emptied (cleared or resolved)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SiteWatch:
        ident = self.registry / "identities"
        tls = ClientTls(
            ca=self.registry / "ca" / "ca.crt",
            cert=ident / f"operator-{self.operator}.crt",
            key=ident / f"operator-{self.operator}.key",
        )
        self._client = make_client(tls, f"operator:{self.operator}")
        filters = [
            (topics.device_filter(topics.Channel.EVENT, site=self.site), 1),
            (topics.alert_filter(self.site), 1),
        ]
        self._client.on_connect = lambda c, *_: c.subscribe(filters)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", self.port)
        self._client.loop_start()
        return self

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        alert_topic = topics.parse_alert_topic(msg.topic)
        if not msg.payload:
            if alert_topic is not None:
                with self._lock:
                    self.closed.add(alert_topic[1])
            return
        unit_topic = topics.device_topic_of(msg.topic)
        try:
            if unit_topic is not None and unit_topic.channel is topics.Channel.EVENT:
                event = models.parse(Event, bytes(msg.payload))
                with self._lock:
                    self.event_ts[event.id] = event.ts
            elif alert_topic is not None:
                alert = models.parse(Alert, bytes(msg.payload))
                with self._lock:
                    self.alerts.append((now, alert))
        except models.WireError:
            return

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def raised(self, rule: str | None = None) -> dict[str, Alert]:
        """Distinct alerts seen, by id (optionally of one rule)."""
        with self._lock:
            return {a.id: a for _, a in self.alerts if rule is None or a.rule == rule}

    def trigger_ts(self, alert_id: str) -> int | None:
        """The unit's time of the event that first raised the alert (None if not seen)."""
        with self._lock:
            first = next((a for _, a in self.alerts if a.id == alert_id), None)
            if first is None or first.event_id is None:
                return None
            return self.event_ts.get(first.event_id)

    def latencies_ms(self, rules: tuple[str, ...]) -> list[float]:
        """Pin change (the event's own time) -> alert message received, for each trigger."""
        out: list[float] = []
        seen: set[tuple[str, str]] = set()
        with self._lock:
            for at, alert in self.alerts:
                if alert.rule not in rules or alert.event_id is None:
                    continue
                if (alert.id, alert.event_id) in seen or alert.event_id not in self.event_ts:
                    continue
                seen.add((alert.id, alert.event_id))
                out.append((at - self.event_ts[alert.event_id]) / 1e6)
        return out


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        arrived = time.time_ns()
        server: Any = self.server
        with server.lock:
            try:
                server.received.append(json.loads(body or b"{}"))
            except ValueError:
                server.received.append({"raw": body.decode(errors="replace")})
            server.arrived.append(arrived)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


class NotificationSink:
    """A webhook on 127.0.0.1 that apprise's json:// sends alert notifications to (a phone's
    stand-in: the payload has title, message and attachments, each base64 with its name)."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        self._server.received = []  # type: ignore[attr-defined]
        self._server.arrived = []  # type: ignore[attr-defined]
        self._server.lock = threading.Lock()  # type: ignore[attr-defined]
        self.url = f"json://127.0.0.1:{self._server.server_address[1]}/jaga"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def received(self) -> list[dict[str, Any]]:
        with self._server.lock:  # type: ignore[attr-defined]
            return list(self._server.received)  # type: ignore[attr-defined]

    @property
    def arrivals(self) -> list[tuple[int, dict[str, Any]]]:
        """(ns since the epoch it arrived, payload) of every notification, in order."""
        with self._server.lock:  # type: ignore[attr-defined]
            return list(zip(self._server.arrived, self._server.received, strict=True))  # type: ignore[attr-defined]

    def pictures(self) -> list[tuple[int, str, bytes]]:
        """(arrived ns, alert id, bytes) of every picture attached, the alert id read from the
        attachment's name (`<alert id>-<sha256 prefix>.jpg`, broker.alerts.delivery)."""
        out: list[tuple[int, str, bytes]] = []
        for at, body in self.arrivals:
            for a in body.get("attachments") or []:
                name = str(a.get("filename", ""))
                alert_id = name.rsplit("-", 1)[0] if name.endswith(".jpg") else name
                out.append((at, alert_id, base64.b64decode(a.get("base64", ""))))
        return out

    def stop(self) -> None:
        self._server.shutdown()
