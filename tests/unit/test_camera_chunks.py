"""Pictures are split into messages that fit the broker's packet limit and put back together
byte for byte; anything inconsistent or altered is refused."""

from __future__ import annotations

import hashlib
import random

import pytest

from protocol.snapshot import (
    BROKER_MAX_PACKET_SIZE,
    ChunkError,
    Reassembler,
    SnapshotChunk,
    pack,
    payload_budget,
    publish_packet_size,
    split,
    unpack,
)
from protocol.topics import DeviceTopics

EVENT = "3f2a9c1e5b7d4e6fa0b1c2d3e4f5a6b7"
TOPIC = DeviceTopics("bangka-barat", "pintu-utama-gudang-3").snapshot(EVENT)
MB = 1024 * 1024


def picture(size: int, seed: int = 7) -> tuple[bytes, str]:
    data = b"\xff\xd8" + random.Random(seed).randbytes(size - 2)
    return data, hashlib.sha256(data).hexdigest()


def test_the_payload_budget_fills_the_whole_packet_to_the_byte() -> None:
    budget = payload_budget(BROKER_MAX_PACKET_SIZE, TOPIC)
    # 1 fixed header + 3 remaining-length + 2 topic length + topic + 2 packet id + 1 properties
    assert budget == BROKER_MAX_PACKET_SIZE - 9 - len(TOPIC)
    assert publish_packet_size(TOPIC, budget) == BROKER_MAX_PACKET_SIZE
    assert publish_packet_size(TOPIC, budget + 1) == BROKER_MAX_PACKET_SIZE + 1
    # Room for MQTT 5 properties if the publisher adds any.
    assert payload_budget(BROKER_MAX_PACKET_SIZE, TOPIC, properties_len=40) == budget - 40


def test_a_1_mb_still_splits_into_packets_within_the_limit_and_comes_back_whole() -> None:
    data, sha = picture(MB)
    budget = payload_budget(BROKER_MAX_PACKET_SIZE, TOPIC)
    payloads = split(EVENT, sha, "still", data, budget)
    assert len(payloads) == 5
    assert all(publish_packet_size(TOPIC, len(p)) <= BROKER_MAX_PACKET_SIZE for p in payloads)
    assert max(len(p) for p in payloads) > budget - 16  # full chunks use the room
    shuffled = payloads + payloads[1:3]  # at-least-once: duplicates, any order
    random.Random(1).shuffle(shuffled)
    re = Reassembler()
    results = [r for r in (re.feed(EVENT, p) for p in shuffled) if r is not None]
    assert len(results) == 1
    whole = results[0]
    assert (whole.event, whole.sha256, whole.role) == (EVENT, sha, "still")
    assert whole.data == data
    assert re.pending_bytes == 0


@pytest.mark.parametrize("size", [1, 2, 500, 4096, 4097, 300_000])
def test_every_size_round_trips_and_every_payload_is_within_max(size: int) -> None:
    data, sha = picture(max(size, 2))[0][:size], ""
    sha = hashlib.sha256(data).hexdigest()
    payloads = split(EVENT, sha, "after", data, max_payload=4096)
    assert all(len(p) <= 4096 for p in payloads)
    re = Reassembler()
    out = [re.feed(EVENT, p) for p in payloads]
    assert out[:-1] == [None] * (len(payloads) - 1)
    last = out[-1]
    assert last is not None and last.data == data


def test_a_header_is_readable_json_and_a_bare_jpeg_is_not_a_chunk() -> None:
    data, sha = picture(1000)
    header, body = unpack(split(EVENT, sha, "before", data, 4096)[0])
    assert header == SnapshotChunk(
        event=EVENT, sha256=sha, role="before", size=1000, index=0, count=1, offset=0
    )
    assert body == data
    with pytest.raises(ChunkError):
        unpack(data)


def test_a_changed_byte_is_an_integrity_violation() -> None:
    data, sha = picture(10_000)
    payloads = split(EVENT, sha, "still", data, 4096)
    payloads[1] = payloads[1][:-1] + bytes([payloads[1][-1] ^ 1])
    re = Reassembler()
    with pytest.raises(ChunkError, match="hashes to"):
        for p in payloads:
            re.feed(EVENT, p)


def test_chunks_that_contradict_each_other_or_the_topic_are_refused() -> None:
    data, sha = picture(10_000)
    payloads = split(EVENT, sha, "still", data, 4096)
    re = Reassembler()
    re.feed(EVENT, payloads[0])
    header, body = unpack(payloads[0])
    with pytest.raises(ChunkError, match="twice"):
        re.feed(EVENT, pack(header, body[:-1] + b"x"))
    other = header.model_copy(update={"count": header.count + 1})
    with pytest.raises(ChunkError, match="disagrees"):
        re.feed(EVENT, pack(other, body))
    with pytest.raises(ChunkError, match="topic"):
        re.feed("another-event", payloads[1])


def test_header_rules_are_checked() -> None:
    _, sha = picture(10)
    with pytest.raises(ValueError):
        SnapshotChunk(event=EVENT, sha256=sha, role="still", size=10, index=2, count=2, offset=0)
    with pytest.raises(ValueError):
        SnapshotChunk(event=EVENT, sha256=sha, role="still", size=10, index=0, count=1, offset=10)


def test_partial_pictures_past_the_memory_bound_are_dropped_oldest_first() -> None:
    re = Reassembler(max_pending_bytes=9000)
    first, sha1 = picture(10_000, seed=1)
    second, sha2 = picture(10_000, seed=2)
    p1 = split(EVENT, sha1, "after", first, 4096)
    p2 = split(EVENT, sha2, "after", second, 4096)
    assert len(p1) == len(p2) == 3
    re.feed(EVENT, p1[0])
    re.feed(EVENT, p1[1])
    assert re.dropped == 0
    re.feed(EVENT, p2[0])  # over 9000 pending: the older, first picture is dropped
    assert re.dropped == 1 and re.pending_bytes <= 9000
    out = [re.feed(EVENT, p) for p in p2[1:]]
    assert out[-1] is not None and out[-1].data == second
    assert all(re.feed(EVENT, p) is None for p in p1[1:])  # its first chunk is gone for good


def test_a_max_payload_too_small_for_the_header_is_an_error() -> None:
    data, sha = picture(100)
    with pytest.raises(ValueError, match="no room"):
        split(EVENT, sha, "still", data, max_payload=150)
