"""One message as the collector takes it in: its topic taken apart once, at the door."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.diskqueue import Item
from broker.refs import UnitRef
from protocol import topics


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ns: int
    backlog: Item | None = None
    """Set when the message comes from the rate-limit backlog (already acknowledged)."""
    where: topics.ParsedTopic | None = field(default=None, compare=False)
    """The topic taken apart; None when it is outside the contract (ingest rejects it)."""

    @classmethod
    def arrived(
        cls,
        topic: str,
        payload: bytes,
        mid: int,
        qos: int,
        received_ns: int,
        where: topics.ParsedTopic | None = None,
    ) -> Inbound:
        """`where`: the topic already taken apart by `parse` (else it is taken apart here)."""
        return cls(topic, payload, mid, qos, received_ns, None, where or parse(topic))

    @classmethod
    def from_backlog(cls, item: Item) -> Inbound:
        return cls(item.meta, item.body, 0, 0, item.created_ns, item, parse(item.meta))

    @property
    def unit(self) -> UnitRef | None:
        return UnitRef(self.where.site, self.where.device) if self.where is not None else None

    @property
    def is_picture(self) -> bool:
        return self.where is not None and self.where.channel is topics.Channel.SNAPSHOT

    @property
    def needs_ack(self) -> bool:
        """Acknowledged to the broker (a backlog item was acknowledged when it was deferred)."""
        return self.qos > 0 and self.backlog is None


_PARSED: dict[str, topics.ParsedTopic | None] = {}
"""Topics taken apart so far: a unit publishes on a handful of topics, thousands of times."""
_PARSED_MAX = 50_000
"""The memory is emptied when it holds this many (topics that are no unit's, from a hostile
client, are kept too)."""


def parse(topic: str) -> topics.ParsedTopic | None:
    """The unit's topic taken apart; None for any other topic."""
    try:
        return _PARSED[topic]
    except KeyError:
        pass
    try:
        where: topics.ParsedTopic | None = topics.parse_device_topic(topic)
    except topics.TopicError:
        where = None
    if where is not None and where.channel is topics.Channel.SNAPSHOT:
        return where  # a picture's chunks name their event: its topic is not seen again for long
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[topic] = where
    return where
