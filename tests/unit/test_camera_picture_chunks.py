"""A camera event's pictures become outbox messages in one place: every chunk on the event's
snapshot topic, each picture put back together byte for byte, and the rows that carry each
picture known from the rows its messages were stored in."""

from __future__ import annotations

import hashlib
import random

import pytest

from agent.camera.chunks import Picture, chunk, chunk_role
from protocol.snapshot import Reassembler, publish_packet_size, unpack
from protocol.topics import DeviceTopics

EVENT = "3f2a9c1e5b7d4e6fa0b1c2d3e4f5a6b7"
TOPIC = DeviceTopics("bangka-barat", "gudang-01").snapshot(EVENT)
PACKET = 16_384


def picture(role: str, size: int, seed: int) -> Picture:
    data = b"\xff\xd8" + random.Random(seed).randbytes(size - 2)
    return Picture(hashlib.sha256(data).hexdigest(), chunk_role(role), data)


SET = [picture("before", 20_000, 1), picture("still", 50_000, 2), picture("after", 3_000, 3)]


def test_every_chunk_is_on_the_events_topic_and_fits_the_brokers_packet_limit() -> None:
    chunks = chunk(TOPIC, EVENT, SET, PACKET)
    assert len(chunks.messages) > len(SET)
    assert all(topic == TOPIC for topic, _ in chunks.messages)
    assert all(publish_packet_size(TOPIC, len(p)) <= PACKET for _, p in chunks.messages)


def test_the_chunks_put_each_picture_back_together_with_its_role() -> None:
    chunks = chunk(TOPIC, EVENT, SET, PACKET)
    roles = {unpack(p)[0].sha256: unpack(p)[0].role for _, p in chunks.messages}
    assert roles == {p.sha256: p.role for p in SET}
    whole = Reassembler()
    done = [whole.feed(EVENT, payload) for _, payload in chunks.messages]
    assert sorted(d.data for d in done if d is not None) == sorted(p.jpeg for p in SET)


def test_rows_are_assigned_to_the_picture_their_message_carries() -> None:
    chunks = chunk(TOPIC, EVENT, SET, PACKET)
    rows = list(range(100, 100 + len(chunks.messages)))
    by_picture = chunks.rows_by_picture(rows)
    assert list(by_picture) == [p.sha256 for p in SET]
    assert [r for its_rows in by_picture.values() for r in its_rows] == rows
    for sha, its_rows in by_picture.items():
        assert all(unpack(chunks.messages[r - 100][1])[0].sha256 == sha for r in its_rows)


def test_rows_that_do_not_match_the_messages_one_for_one_are_refused() -> None:
    chunks = chunk(TOPIC, EVENT, SET, PACKET)
    with pytest.raises(ValueError, match="rows for"):
        chunks.rows_by_picture([1, 2])


def test_a_role_the_wire_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="not a picture role"):
        chunk_role("during")
