"""The collector's seam to the broker: publish, subscribe, acknowledge, and what comes back.

`Link` is what the broker session needs of MQTT; `kernel.mqtt.PahoLink` is the real one and
`MemoryLink` an in-process broker for unit tests (as gpiozero ships MockFactory and httpx
MockTransport): the same session logic runs with no Mosquitto and no network thread.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """One inbound message; `mid` is what `Link.ack` takes back (0 for QoS 0)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    mid: int = 0


class LinkHandler(Protocol):
    """What a link tells its owner; called on the link's thread (paho's network thread)."""

    def on_connected(self, resumed: bool) -> None:
        """The broker accepted us; resumed: it kept our session (subscriptions, queue)."""

    def on_refused(self, reason: str) -> None:
        """The broker refused the connection (certificate, ACL)."""

    def on_subscribed(self, failures: list[str]) -> None:
        """The broker answered a subscribe; failures: the refused filters' reasons."""

    def on_disconnected(self, reason: str) -> None:
        """The connection is gone; the link reconnects by itself."""

    def on_message(self, msg: Message) -> None:
        """A message arrived; with manual acknowledgement it waits for `Link.ack`."""


class Link(Protocol):
    """An MQTT 5 connection with manual acknowledgement, behind four verbs."""

    def start(self, handler: LinkHandler) -> None:
        """Begin connecting in the background; events go to handler."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish; False when it was refused at once (e.g. not connected)."""

    def subscribe(self, filters: Sequence[str]) -> None:
        """Subscribe at QoS 1; the answer comes as `LinkHandler.on_subscribed`."""

    def unsubscribe(self, filters: Sequence[str]) -> None:
        """Drop subscriptions a kept session still has."""

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge an inbound message: the broker may forget it now."""

    def ack_many(self, mids: Sequence[int]) -> None:
        """`ack(mid, 1)` for each of a batch's QoS 1 messages, in order (one write)."""

    def close(self) -> None:
        """Disconnect cleanly (the will stays unpublished) and stop the link's thread."""


def matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching: `+` one level, `#` the rest; `$share/<group>/` is ignored."""
    if pattern.startswith("$share/"):
        pattern = pattern.split("/", 2)[2]
    want, have = pattern.split("/"), topic.split("/")
    if have[0].startswith("$") and want[0] in ("+", "#"):
        return False  # wildcards do not reach $SYS and the like
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or (level != "+" and level != have[i]):
            return False
    return len(want) == len(have)


@dataclass
class _Session:
    filters: list[str] = field(default_factory=list)
    pending: dict[int, Message] = field(default_factory=dict)
    """Delivered at QoS 1 and not yet acknowledged: delivered again on reconnect."""
    link: MemoryLink | None = None


class MemoryBroker:
    """An in-process broker for links in one test: QoS 1, retained messages, kept sessions."""

    def __init__(self) -> None:
        self.retained: dict[str, Message] = {}
        self._sessions: dict[str, _Session] = {}
        self._mids = itertools.count(1)
        self._lock = threading.RLock()

    def link(self, client_id: str, *, clean_start: bool = False) -> MemoryLink:
        """A client of this broker (not connected until `start`)."""
        return MemoryLink(self, client_id, clean_start=clean_start)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Deliver to every matching subscriber, as a publishing client would."""
        with self._lock:
            if retain:
                if payload:
                    self.retained[topic] = Message(topic, payload, qos, True)
                else:
                    self.retained.pop(topic, None)
            served: set[str] = set()  # a shared subscription's group gets one copy
            for session in list(self._sessions.values()):
                hits = [f for f in session.filters if matches(f, topic)]
                groups = {f.split("/", 2)[1] for f in hits if f.startswith("$share/")}
                if not hits or (groups and groups <= served and len(groups) == len(hits)):
                    continue
                served |= groups
                self._deliver(session, Message(topic, payload, qos, False))

    def _deliver(self, session: _Session, msg: Message) -> None:
        if msg.qos > 0:
            msg = Message(msg.topic, msg.payload, msg.qos, msg.retain, next(self._mids))
            session.pending[msg.mid] = msg
        if session.link is not None and session.link.handler is not None:
            session.link.handler.on_message(msg)


class MemoryLink:
    """A `Link` to a MemoryBroker; delivers on the caller's thread, so tests need no waiting."""

    def __init__(self, broker: MemoryBroker, client_id: str, *, clean_start: bool = False) -> None:
        self.broker = broker
        self.client_id = client_id
        self.clean_start = clean_start
        self.handler: LinkHandler | None = None
        self.acked: list[int] = []
        """Message ids this client acknowledged, in order."""
        self.published: list[Message] = []
        """What this client published, in order."""

    @property
    def connected(self) -> bool:
        s = self.broker._sessions.get(self.client_id)
        return s is not None and s.link is self

    def start(self, handler: LinkHandler) -> None:
        self.handler = handler
        self.reconnect()

    def reconnect(self) -> None:
        """Connect again (after `drop`): a kept session gets its unacknowledged messages again."""
        assert self.handler is not None, "start the link first"
        b = self.broker
        with b._lock:
            session = b._sessions.get(self.client_id)
            resumed = session is not None and not self.clean_start
            if session is None or self.clean_start:
                session = b._sessions[self.client_id] = _Session()
            session.link = self
            again = list(session.pending.values())
            self.handler.on_connected(resumed)
            for msg in again:
                self.handler.on_message(msg)

    def drop(self, reason: str = "connection lost") -> None:
        """Lose the connection without a goodbye; the session stays with the broker."""
        with self.broker._lock:
            session = self.broker._sessions.get(self.client_id)
            if session is not None and session.link is self:
                session.link = None
        if self.handler is not None:
            self.handler.on_disconnected(reason)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        if not self.connected:
            return False
        self.published.append(Message(topic, payload, qos, retain))
        self.broker.publish(topic, payload, qos=qos, retain=retain)
        return True

    def subscribe(self, filters: Sequence[str]) -> None:
        b = self.broker
        with b._lock:
            session = b._sessions[self.client_id]
            new = [f for f in filters if f not in session.filters]
            session.filters.extend(new)
            assert self.handler is not None
            self.handler.on_subscribed([])
            for msg in list(b.retained.values()):
                if any(matches(f, msg.topic) for f in new):
                    b._deliver(session, msg)

    def unsubscribe(self, filters: Sequence[str]) -> None:
        with self.broker._lock:
            session = self.broker._sessions[self.client_id]
            session.filters = [f for f in session.filters if f not in filters]

    def subscriptions(self) -> list[str]:
        """The filters the broker keeps for this client."""
        session = self.broker._sessions.get(self.client_id)
        return list(session.filters) if session is not None else []

    def ack(self, mid: int, qos: int) -> None:
        with self.broker._lock:
            session = self.broker._sessions.get(self.client_id)
            if session is not None and session.pending.pop(mid, None) is not None:
                self.acked.append(mid)

    def ack_many(self, mids: Sequence[int]) -> None:
        for mid in mids:
            self.ack(mid, 1)

    def close(self) -> None:
        with self.broker._lock:
            session = self.broker._sessions.get(self.client_id)
            if session is not None and session.link is self:
                session.link = None
