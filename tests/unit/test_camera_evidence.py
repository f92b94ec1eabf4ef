"""An evidence set holds the frames before a trigger, the still and the frames after it, in that
order, each with its SHA-256; it closes only once its after-window has passed."""

from __future__ import annotations

import hashlib

from agent.camera.base import Frame
from agent.camera.evidence import Evidence, EvidenceState, Role
from agent.camera.ring import FrameRing
from protocol.models import Kind

S = 1_000_000_000
MS = 1_000_000
T = 100 * S  # the trigger
LOGIC = Evidence(before_ns=10 * S, after_ns=3 * S, still_grace_ns=5 * S)


def frame(at_ns: int, seq: int = 0) -> Frame:
    return Frame(f"jpeg@{at_ns}".encode(), at_ns, seq)


def ring_with(times: list[int]) -> FrameRing:
    ring = FrameRing(max_frames=100)
    for i, t in enumerate(times):
        ring.push(frame(t, i))
    return ring


def test_a_trigger_gathers_before_frames_the_still_and_after_frames_in_that_order() -> None:
    ring = ring_with([T - 12 * S, T - 10 * S, T - 5 * S, T - 500 * MS, T])
    state = LOGIC.trigger(EvidenceState(), "door-1", T, ring.frames())
    state = LOGIC.still(state, "door-1", b"the-still", T + 200 * MS)
    for t in (T + 500 * MS, T + 3 * S, T + 3 * S + 1):
        state = LOGIC.frame(state, frame(t))
    state, done = LOGIC.tick(state, T + 3 * S)
    assert len(done) == 1 and state.pending == ()
    files = done[0].files
    assert [f.role for f in files] == [Role.BEFORE] * 4 + [Role.STILL] + [Role.AFTER] * 2
    assert [f.mono_ns for f in files] == [
        T - 10 * S,
        T - 5 * S,
        T - 500 * MS,
        T,  # the frame 12 s before is out of the window
        T + 200 * MS,
        T + 500 * MS,
        T + 3 * S,  # the frame past 3 s is not in
    ]
    assert files[4].jpeg == b"the-still"
    assert done[0].hashes == tuple(hashlib.sha256(f.jpeg).hexdigest() for f in files)
    assert done[0].still_taken


def test_the_set_stays_open_until_the_after_window_has_passed() -> None:
    state = LOGIC.trigger(EvidenceState(), "k", T, [])
    state = LOGIC.still(state, "k", b"s", T)
    assert LOGIC.deadline(state) == T + 3 * S
    state, done = LOGIC.tick(state, T + 3 * S - 1)
    assert done == [] and len(state.pending) == 1


def test_without_a_still_the_set_waits_the_grace_then_closes_without_it() -> None:
    state = LOGIC.trigger(EvidenceState(), "k", T, [frame(T - S)])
    state, done = LOGIC.tick(state, T + 3 * S)
    assert done == []
    assert LOGIC.deadline(state) == T + 8 * S
    state, done = LOGIC.tick(state, T + 8 * S)
    assert len(done) == 1
    assert not done[0].still_taken
    assert [f.role for f in done[0].files] == [Role.BEFORE]


def test_a_still_that_failed_closes_the_set_on_time_without_it() -> None:
    state = LOGIC.trigger(EvidenceState(), "k", T, [])
    state = LOGIC.still(state, "k", None, T + S)
    _, done = LOGIC.tick(state, T + 3 * S)
    assert len(done) == 1 and done[0].files == () and not done[0].still_taken


def test_a_frame_captured_before_the_trigger_but_read_after_it_joins_the_before_frames() -> None:
    state = LOGIC.trigger(EvidenceState(), "k", T, [frame(T - 2 * S)])
    state = LOGIC.frame(state, frame(T - S))  # encoded and delivered late
    state = LOGIC.frame(state, frame(T - S))  # the same frame twice counts once
    state = LOGIC.still(state, "k", b"s", T)
    _, done = LOGIC.tick(state, T + 3 * S)
    assert [(f.role, f.mono_ns) for f in done[0].files] == [
        (Role.BEFORE, T - 2 * S),
        (Role.BEFORE, T - S),
        (Role.STILL, T),
    ]


def test_overlapping_triggers_each_get_their_own_set_and_a_repeated_key_is_one_trigger() -> None:
    state = LOGIC.trigger(EvidenceState(), "a", T, [frame(T - S)])
    state = LOGIC.trigger(state, "b", T + S, [frame(T - S)])
    state = LOGIC.trigger(state, "a", T + 2 * S, [])  # repeated: ignored
    state = LOGIC.frame(state, frame(T + 2 * S))
    state = LOGIC.still(state, "a", b"sa", T)
    state = LOGIC.still(state, "b", b"sb", T + S)
    state, first = LOGIC.tick(state, T + 3 * S)
    assert [s.key for s in first] == ["a"]
    assert first[0].trigger_ns == T
    state, second = LOGIC.tick(state, T + 4 * S)
    assert [s.key for s in second] == ["b"]
    assert frame(T + 2 * S).jpeg in {f.jpeg for f in first[0].files}
    assert frame(T + 2 * S).jpeg in {f.jpeg for f in second[0].files}
    assert state.pending == ()


def test_a_set_is_capped_at_64_files_dropping_the_oldest_before_frames_first() -> None:
    logic = Evidence(before_ns=60 * S, after_ns=10 * S)
    buffered = [frame(T - i * 500 * MS) for i in range(100, -1, -1)]  # 101 frames
    state = logic.trigger(EvidenceState(), "k", T, buffered)
    state = logic.still(state, "k", b"s", T)
    for i in range(1, 21):
        state = logic.frame(state, frame(T + i * 500 * MS))
    _, done = logic.tick(state, T + 10 * S)
    files = done[0].files
    assert len(files) == 64
    assert [f.role for f in files].count(Role.AFTER) == 20
    assert files[0].mono_ns == T - 42 * 500 * MS  # 43 before-frames kept, the newest ones
    assert files[42].mono_ns == T and files[43].role is Role.STILL


def test_the_set_is_signed_as_a_camera_snapshot_at_the_trigger_time() -> None:
    state = LOGIC.trigger(EvidenceState(), "k", T, [])
    state = LOGIC.still(state, "k", b"s", T)
    _, done = LOGIC.tick(state, T + 3 * S)
    obs = done[0].observation()
    assert (obs.sensor, obs.kind, obs.state, obs.at_ns) == ("camera", Kind.CAMERA, "snapshot", T)
