"""Evidence pictures on the wire: one picture split into MQTT messages that each fit the broker's
max_packet_size, and put back together on the other side.

Wire format of one message on jaga/v1/<site>/<device>/snapshot/<event id> (QoS 1):

    <header: compact JSON of SnapshotChunk> b"\\n" <bytes offset .. offset+len of the picture>

The header is a strict, versioned model like every other payload; compact JSON never contains a
newline, so the first b"\\n" ends it. The header travels inside the payload, not as MQTT 5 user
properties, because the unit's outbox stores (topic, payload, qos) and nothing else, and a
payload that carries its own description survives any store-and-forward hop unchanged. A
payload starting with the JPEG marker 0xFF 0xD8 is not a chunk, so the two cannot be confused.

This module imports only protocol.models: it is meant to move to protocol/snapshot.py as is,
so that the collector can reassemble with the very code the unit splits with.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from protocol.models import HEX64, Token, WireError, WireModel, parse

SEPARATOR = b"\n"
MAX_HEADER = 512
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_CHUNKS = 4096
DONE_REMEMBERED = 4096
"""Pictures completed recently, so that late duplicates of their chunks are recognised."""
BROKER_MAX_PACKET_SIZE = 262_144
"""max_packet_size of the Mosquitto config that broker/ renders (whole MQTT packet)."""

ChunkRole = Literal["before", "still", "after"]


class SnapshotChunk(WireModel):
    """Header of one piece of an evidence picture; the event id repeats the topic's last level."""

    v: Literal[1] = 1
    event: Token
    sha256: HEX64 = Field(description="SHA-256 of the whole picture, as in the signed event")
    role: ChunkRole
    size: int = Field(ge=1, le=MAX_FILE_BYTES, description="bytes of the whole picture")
    index: int = Field(ge=0)
    count: int = Field(ge=1, le=MAX_CHUNKS)
    offset: int = Field(ge=0, description="where this piece starts in the picture")

    def model_post_init(self, _context: object) -> None:
        if self.index >= self.count:
            raise ValueError(f"chunk index {self.index} is not below count {self.count}")
        if self.offset >= self.size:
            raise ValueError(f"chunk offset {self.offset} is not below size {self.size}")


class ChunkError(WireError):
    """A chunk that is malformed, contradicts its siblings, or completes a picture whose hash
    is not the one announced (an integrity violation)."""


# sizes -----------------------------------------------------------------------------------


def varint_len(n: int) -> int:
    """Bytes of an MQTT variable byte integer."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"{n} does not fit an MQTT variable byte integer")
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def publish_packet_size(
    topic: str, payload_len: int, *, qos: int = 1, properties_len: int = 0, mqtt5: bool = True
) -> int:
    """Bytes of a whole PUBLISH packet: fixed header, topic, packet id, properties, payload."""
    remaining = 2 + len(topic.encode()) + (2 if qos > 0 else 0) + payload_len
    if mqtt5:
        remaining += varint_len(properties_len) + properties_len
    return 1 + varint_len(remaining) + remaining


def payload_budget(
    max_packet_size: int, topic: str, *, qos: int = 1, properties_len: int = 0, mqtt5: bool = True
) -> int:
    """The largest payload whose PUBLISH on `topic` is at most max_packet_size bytes."""
    budget = max_packet_size
    while (
        budget > 0
        and publish_packet_size(topic, budget, qos=qos, properties_len=properties_len, mqtt5=mqtt5)
        > max_packet_size
    ):
        budget -= 1
    if budget <= 0:
        raise ValueError(f"max_packet_size {max_packet_size} leaves no room for a payload")
    return budget


# splitting -------------------------------------------------------------------------------


def pack(header: SnapshotChunk, data: bytes) -> bytes:
    return header.to_json() + SEPARATOR + data


def unpack(payload: bytes) -> tuple[SnapshotChunk, bytes]:
    """Header and bytes of one chunk; ChunkError if the payload is not a chunk."""
    end = payload.find(SEPARATOR, 0, MAX_HEADER + 1)
    if end < 0:
        raise ChunkError(f"no chunk header in the first {MAX_HEADER} bytes")
    try:
        header = parse(SnapshotChunk, payload[:end])
    except WireError as exc:
        raise ChunkError(f"chunk header: {exc}") from None
    return header, payload[end + 1 :]


def split(
    event_id: str, sha256: str, role: ChunkRole, data: bytes, max_payload: int
) -> list[bytes]:
    """Payloads, in order, each at most max_payload bytes, that carry `data` whole."""
    size = len(data)
    if not 1 <= size <= MAX_FILE_BYTES:
        raise ValueError(f"a picture has 1-{MAX_FILE_BYTES} bytes, not {size}")

    def header(index: int, count: int, offset: int) -> SnapshotChunk:
        return SnapshotChunk(
            event=event_id,
            sha256=sha256,
            role=role,
            size=size,
            index=index,
            count=count,
            offset=offset,
        )

    count = 1
    while True:
        # The widest header this count can produce: the largest numbers it will carry.
        widest = len(header(count - 1, count, size - 1).to_json()) + len(SEPARATOR)
        room = max_payload - widest
        if room < 1:
            raise ValueError(f"max_payload {max_payload} leaves no room after the chunk header")
        needed = -(-size // room)
        if needed <= count:
            break
        count = needed
    if count > MAX_CHUNKS:
        raise ValueError(
            f"{size} bytes need {count} chunks of {max_payload}; the limit is {MAX_CHUNKS}"
        )
    return [pack(header(i, count, i * room), data[i * room : (i + 1) * room]) for i in range(count)]


# reassembling ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assembled:
    """A whole picture whose bytes hash to the SHA-256 its chunks announced."""

    event: str
    sha256: str
    role: str
    data: bytes


def open_chunk(
    event_id: str, payload: bytes, max_file_bytes: int = MAX_FILE_BYTES
) -> tuple[SnapshotChunk, bytes]:
    """Header and bytes of a chunk that arrived on snapshot/<event_id>, checked on its own."""
    header, data = unpack(payload)
    if header.event != event_id:
        raise ChunkError(f"chunk of event {header.event} arrived on the topic of {event_id}")
    if header.size > max_file_bytes:
        raise ChunkError(f"picture of {header.size} bytes is over {max_file_bytes}")
    if not data or header.offset + len(data) > header.size:
        raise ChunkError(
            f"chunk {header.index} has {len(data)} bytes at {header.offset}"
            f" of a {header.size}-byte picture"
        )
    return header, data


def check_sibling(first: SnapshotChunk, header: SnapshotChunk) -> None:
    """A chunk must agree with the first chunk of its picture on size, count and role."""
    if (header.size, header.count, header.role) != (first.size, first.count, first.role):
        raise ChunkError(
            f"chunk {header.index} of {header.sha256} disagrees with chunk "
            f"{first.index} on size, count or role"
        )


def assemble(first: SnapshotChunk, pieces: Mapping[int, tuple[int, bytes]]) -> Assembled:
    """The whole picture from all its (offset, bytes) pieces by index, checked against the
    size and SHA-256 its chunks announced (ChunkError otherwise)."""
    expected = 0
    parts = []
    for index in range(first.count):
        offset, data = pieces[index]
        if offset != expected:
            raise ChunkError(f"chunk {index} of {first.sha256} starts at {offset}, not {expected}")
        parts.append(data)
        expected += len(data)
    whole = b"".join(parts)
    if len(whole) != first.size:
        raise ChunkError(f"{first.sha256}: chunks add up to {len(whole)} bytes, not {first.size}")
    actual = hashlib.sha256(whole).hexdigest()
    if actual != first.sha256:
        raise ChunkError(f"picture announced as {first.sha256} hashes to {actual}")
    return Assembled(first.event, first.sha256, first.role, whole)


@dataclass
class _Partial:
    first: SnapshotChunk
    pieces: dict[int, tuple[int, bytes]]
    nbytes: int = 0


class Reassembler:
    """Collects chunks (any order, duplicates allowed) into whole pictures, in memory, bounded.

    A duplicate chunk (at-least-once delivery) is ignored; a chunk that contradicts what came
    before raises ChunkError; the oldest partial pictures are dropped past `max_pending_bytes`.
    """

    def __init__(
        self, *, max_file_bytes: int = MAX_FILE_BYTES, max_pending_bytes: int = 256 * 1024 * 1024
    ) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_pending_bytes = max_pending_bytes
        self._partials: OrderedDict[tuple[str, str], _Partial] = OrderedDict()
        self._pending_bytes = 0
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.dropped = 0

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def feed(self, event_id: str, payload: bytes) -> Assembled | None:
        """One message from snapshot/<event_id>; the picture once its last chunk is in."""
        header, data = open_chunk(event_id, payload, self.max_file_bytes)
        key = (header.event, header.sha256)
        if key in self._done:
            return None  # a late duplicate of a picture already delivered whole
        partial = self._partials.get(key)
        if partial is None:
            partial = self._partials[key] = _Partial(header, {})
        check_sibling(partial.first, header)
        seen = partial.pieces.get(header.index)
        if seen is not None:
            if seen != (header.offset, data):
                raise ChunkError(
                    f"chunk {header.index} of {header.sha256} arrived twice, different"
                )
            return None
        partial.pieces[header.index] = (header.offset, data)
        partial.nbytes += len(data)
        self._pending_bytes += len(data)
        if len(partial.pieces) == partial.first.count:
            return self._finish(key, partial)
        self._bound()
        return None

    def _finish(self, key: tuple[str, str], partial: _Partial) -> Assembled:
        del self._partials[key]
        self._pending_bytes -= partial.nbytes
        self._done[key] = None
        while len(self._done) > DONE_REMEMBERED:
            self._done.popitem(last=False)
        return assemble(partial.first, partial.pieces)

    def _bound(self) -> None:
        while self._pending_bytes > self.max_pending_bytes and self._partials:
            _, oldest = self._partials.popitem(last=False)
            self._pending_bytes -= oldest.nbytes
            self.dropped += 1
