"""The ring keeps the most recent frames within both its count and its byte bound."""

from __future__ import annotations

import pytest

from agent.camera.base import Frame
from agent.camera.ring import FrameRing

S = 1_000_000_000


def frame(seq: int, size: int = 100) -> Frame:
    return Frame(bytes([seq % 256]) * size, seq * S // 2, seq)


def test_default_window_is_two_fps_for_ten_seconds() -> None:
    assert FrameRing.for_window().max_frames == 20
    assert FrameRing.for_window(fps=5, seconds=4).max_frames == 20


def test_the_count_bound_keeps_the_newest_frames_in_order() -> None:
    ring = FrameRing(max_frames=3, max_bytes=10_000)
    for i in range(1, 6):
        ring.push(frame(i))
    assert [f.seq for f in ring.frames()] == [3, 4, 5]
    assert ring.dropped == 2
    assert ring.nbytes == 300


def test_the_byte_bound_evicts_oldest_until_the_new_frame_fits() -> None:
    ring = FrameRing(max_frames=100, max_bytes=1_000)
    for i in range(1, 5):
        ring.push(frame(i, 300))
    assert [f.seq for f in ring.frames()] == [2, 3, 4]
    ring.push(frame(5, 900))
    assert [f.seq for f in ring.frames()] == [5]
    assert ring.nbytes == 900 <= ring.max_bytes


def test_a_frame_larger_than_the_whole_ring_is_refused_and_the_ring_kept() -> None:
    ring = FrameRing(max_frames=10, max_bytes=500)
    ring.push(frame(1, 200))
    assert ring.push(frame(2, 501)) is False
    assert [f.seq for f in ring.frames()] == [1]
    assert ring.dropped == 1


def test_between_selects_by_capture_time_inclusive() -> None:
    ring = FrameRing(max_frames=10)
    for i in range(1, 8):
        ring.push(frame(i))  # at 0.5 s steps
    assert [f.seq for f in ring.between(1 * S, 2 * S)] == [2, 3, 4]


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FrameRing(max_frames=0)
