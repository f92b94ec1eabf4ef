"""Live view: the unit's lease (pure, time passed in), the collector's leases and budget, the
relay's fan-out bounds, and the frame stamp."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agent.camera.base import Frame
from agent.camera.live import IDLE, Lease, LiveTap
from broker.collector.live import Leases, LiveAsk
from broker.web.relay import Relay
from protocol.live import MAX_FRAME_BYTES, read_stamp, stamp

S = 1_000_000_000
JPEG = b"\xff\xd8" + b"\x00" * 1000 + b"\xff\xd9"


def _into(sent: list[bytes]) -> Callable[[bytes], bool]:
    def send(payload: bytes) -> bool:
        sent.append(payload)
        return True

    return send


def test_a_lease_sends_frames_at_its_rate_and_stops_by_itself_when_it_runs_out() -> None:
    lease = Lease(max_fps=2.0)
    state = lease.grant(IDLE, 10, 2.0, now_ns=0)
    sent = []
    for t in range(0, 15 * S, S // 10):  # a camera reading 10 frames a second for 15 s
        state, due = lease.frame(state, t)
        if due:
            sent.append(t)
    assert sent[0] == 0
    assert len(sent) == 20  # 2 a second for the 10 s of the lease, none after
    assert max(sent) < 10 * S


def test_a_renewed_lease_keeps_streaming_and_a_zero_lease_stops_at_once() -> None:
    lease = Lease(max_fps=2.0)
    state = lease.grant(IDLE, 10, 2.0, 0)
    state = lease.grant(state, 10, 2.0, 8 * S)
    assert lease.active(state, 17 * S) and not lease.active(state, 18 * S)
    stopped = lease.grant(state, 0, 2.0, 9 * S)
    assert stopped == IDLE
    assert lease.frame(stopped, 9 * S)[1] is False


def test_a_unit_never_streams_faster_nor_longer_than_its_own_caps() -> None:
    lease = Lease(max_fps=1.0, max_lease_s=5)
    state = lease.grant(IDLE, 60, 5.0, 0)
    assert state.period_ns == S and state.until_ns == 5 * S


def test_a_late_camera_gets_one_frame_not_a_burst() -> None:
    lease = Lease(max_fps=2.0)
    state = lease.grant(IDLE, 30, 2.0, 0)
    state, _ = lease.frame(state, 0)
    state, due = lease.frame(state, 5 * S)  # the camera stalled 5 s
    assert due
    state, due = lease.frame(state, 5 * S + 1)
    assert not due


def test_the_tap_stamps_frames_with_their_capture_time_and_sends_only_under_a_lease() -> None:
    sent: list[bytes] = []
    now = [100 * S]
    tap = LiveTap(_into(sent), mono_ns=lambda: now[0], wall_ns=lambda: 7 * S)
    tap.offer(Frame(JPEG, now[0], 1))
    assert sent == []  # no lease, no bytes
    tap.grant(10, 2.0)
    tap.offer(Frame(JPEG, now[0] - S // 2, 2))
    assert len(sent) == 1
    got = read_stamp(sent[0])
    assert got is not None and got.seq == 2 and got.ts_ns == 7 * S - S // 2
    now[0] += 11 * S
    tap.offer(Frame(JPEG, now[0], 3))
    assert len(sent) == 1 and not tap.streaming


def test_a_frame_too_big_for_the_broker_is_not_sent() -> None:
    sent: list[bytes] = []
    tap = LiveTap(_into(sent), mono_ns=lambda: 0, wall_ns=lambda: 0)
    tap.grant(10, 2.0)
    tap.offer(Frame(b"\xff\xd8" + b"\x00" * MAX_FRAME_BYTES, 0, 1))
    assert sent == [] and tap.too_big == 1


def test_the_tap_sends_the_cameras_lores_picture_and_encodes_it_only_for_frames_it_sends() -> None:
    sent: list[bytes] = []
    now = [100 * S]
    encoded: list[int] = []
    lores = b"\xff\xd8" + b"\x01" * 100 + b"\xff\xd9"

    def frame(seq: int) -> Frame:
        def encode() -> bytes:
            encoded.append(seq)
            return lores

        return Frame(JPEG, now[0], seq, encode)

    tap = LiveTap(_into(sent), mono_ns=lambda: now[0], wall_ns=lambda: 7 * S)
    tap.offer(frame(1))  # no lease: nothing encoded
    tap.grant(10, 2.0)
    tap.offer(frame(2))
    tap.offer(frame(3))  # the same instant: not due at 2 frames/s
    assert encoded == [2] and len(sent) == 1
    assert b"\x01" * 100 in sent[0] and b"\x00" * 1000 not in sent[0]


def test_a_stamped_frame_is_still_a_jpeg_and_an_unstamped_one_has_no_stamp() -> None:
    framed = stamp(JPEG, 123, 4)
    assert framed.startswith(b"\xff\xd8\xff\xfe") and framed.endswith(JPEG[2:])
    assert read_stamp(JPEG) is None
    with pytest.raises(ValueError):
        stamp(b"GIF89a", 1, 1)


def test_leases_ask_at_once_renew_while_watched_and_stop_after_the_last_viewer_left() -> None:
    leases = Leases(lease_s=10, renew_s=3, linger_s=2)
    cam = ("site-a", "gudang-01")
    leases.watch(cam)
    assert leases.due(0) == [LiveAsk("site-a", "gudang-01", 10, 2.0)]
    assert leases.due(2 * S) == []
    assert leases.due(3 * S) == [LiveAsk("site-a", "gudang-01", 10, 2.0)]
    leases.unwatch(cam, 4 * S)
    assert leases.due(5 * S) == []  # a page reload does not stop and restart the stream
    assert leases.due(6 * S) == [LiveAsk("site-a", "gudang-01", 0.0, 2.0)]
    assert leases.due(60 * S) == [] and leases.streaming() == set()


def test_a_sites_uplink_budget_lowers_the_frame_rate_of_its_cameras_only() -> None:
    leases = Leases(fps=2.0, site_budget_bytes_s=100_000)
    for d in ("a", "b", "c", "d"):
        leases.watch(("slow", d))
        leases.frame_seen(("slow", d), 50_000)
    leases.watch(("other", "x"))
    asks = {(a.site, a.device): a.fps for a in leases.due(0)}
    assert asks[("slow", "a")] == 0.5  # 4 cameras of 50 kB in 100 kB/s
    assert asks[("other", "x")] == 2.0


def test_a_thousand_viewers_share_one_frame_per_camera_and_the_relay_caps_viewers() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        leases = Leases()
        now = [0]
        relay = Relay(leases, max_viewers=1000, clock=lambda: now[0])
        cams = frozenset({("s", f"cam-{i}") for i in range(16)})
        viewers = [relay.open(cams, loop) for _ in range(1000)]
        assert all(v is not None for v in viewers)
        assert relay.open(cams, loop) is None and relay.refused == 1
        leases.due(0)
        for round_ in range(5):
            now[0] = round_ * S
            for site, device in sorted(cams):
                relay.on_frame(site, device, stamp(JPEG, round_, round_))
        await asyncio.sleep(0)
        assert relay.relayed == 80
        assert relay.kept_bytes <= 16 * len(stamp(JPEG, 1, 1)) + 16 * 4
        # each viewer holds at most one pending mark per camera, never a queue of frames
        assert all(v is not None and len(v.pending) <= 16 for v in viewers)
        for v in viewers:
            assert v is not None
            relay.close(v)
        assert relay.viewers == 0 and not leases.watchers

    asyncio.run(run())


def test_the_relay_drops_frames_nobody_asked_for_and_non_jpegs() -> None:
    relay = Relay(Leases())
    relay.on_frame("s", "d", JPEG)
    relay.on_frame("s", "d", b"not a jpeg")
    assert relay.relayed == 0 and relay.dropped == 2
