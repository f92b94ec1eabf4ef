"""The simulated camera makes real, distinct JPEGs at its rate, and can stall or be covered."""

from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image, ImageChops

from agent.camera.base import CameraError
from agent.camera.health import look
from agent.camera.simulated import SimulatedCamera, clock_text

S = 1_000_000_000
WALL = 1_700_000_000 * S


class FakeClock:
    """Monotonic time that only moves when the camera sleeps."""

    def __init__(self, start_ns: int = 1_000 * S) -> None:
        self.now = start_ns
        self.slept: list[float] = []

    def mono_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += int(seconds * S)


def camera(clock: FakeClock, unit: str = "pintu-utama", **kwargs: object) -> SimulatedCamera:
    cam = SimulatedCamera(
        unit,
        mono_ns=clock.mono_ns,
        wall_ns=lambda: WALL,
        sleep=clock.sleep,
        seed=1,
        **kwargs,  # type: ignore[arg-type]
    )
    cam.start()
    return cam


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    image.load()
    return image


def test_frames_are_jpegs_of_the_configured_size_and_consecutive_frames_differ() -> None:
    cam = camera(FakeClock(), size=(320, 240))
    a, b = cam.frame(), cam.frame()
    assert a is not None and b is not None
    first, second = decode(a.jpeg), decode(b.jpeg)
    assert first.size == second.size == (320, 240)
    assert ImageChops.difference(first.convert("RGB"), second.convert("RGB")).getbbox() is not None
    assert (a.seq, b.seq) == (1, 2)


def test_the_unit_name_is_drawn_into_the_frame() -> None:
    clock = FakeClock()
    same_a = camera(clock, "pintu-utama").frame()
    same_b = camera(clock, "pintu-utama").frame()
    other = camera(clock, "pintu-belakang").frame()
    assert same_a is not None and same_b is not None and other is not None
    assert same_a.jpeg == same_b.jpeg  # the scene is a function of name, time and number
    assert other.jpeg != same_a.jpeg


def test_frames_come_at_the_configured_rate_on_the_monotonic_clock() -> None:
    clock = FakeClock()
    cam = camera(clock, fps=4.0)
    frames = [cam.frame() for _ in range(5)]
    times = [f.mono_ns for f in frames if f is not None]
    assert len(times) == 5
    assert [b - a for a, b in itertools.pairwise(times)] == [S // 4] * 4


def test_a_timeout_shorter_than_the_frame_period_returns_none() -> None:
    clock = FakeClock()
    cam = camera(clock, fps=1.0)
    assert cam.frame() is not None
    before = clock.now
    assert cam.frame(timeout_s=0.25) is None
    assert clock.now - before == S // 4
    assert cam.frame(timeout_s=1.0) is not None


def test_a_stalled_camera_gives_no_frames_and_no_still_until_it_resumes() -> None:
    clock = FakeClock()
    cam = camera(clock)
    cam.stall()
    assert cam.frame(timeout_s=1.0) is None
    with pytest.raises(CameraError):
        cam.still(timeout_s=2.0)
    cam.stall(False)
    assert cam.frame(timeout_s=1.0) is not None


def test_a_covered_camera_sees_a_near_uniform_dark_frame() -> None:
    cam = camera(FakeClock())
    open_frame = cam.frame()
    cam.cover()
    covered = cam.frame()
    assert open_frame is not None and covered is not None
    seen_open, seen_covered = look(open_frame.jpeg), look(covered.jpeg)
    assert seen_covered.stddev < 3 and seen_covered.mean < 30
    assert seen_open.stddev > 30


def test_the_still_is_a_full_resolution_jpeg() -> None:
    cam = camera(FakeClock(), still_size=(1600, 1200))
    assert decode(cam.still()).size == (1600, 1200)


def test_a_stopped_camera_refuses_to_capture() -> None:
    cam = camera(FakeClock())
    cam.stop()
    with pytest.raises(CameraError):
        cam.frame()
    with pytest.raises(CameraError):
        cam.still()


def test_frames_show_the_wall_clock_to_the_tenth_of_a_second_so_a_viewer_sees_the_delay() -> None:
    def first_frame(wall_ns: int) -> bytes:
        clock = FakeClock()
        cam = SimulatedCamera(
            "pintu-utama", mono_ns=clock.mono_ns, wall_ns=lambda: wall_ns, sleep=clock.sleep
        )
        cam.start()
        got = cam.frame()
        assert got is not None
        return got.jpeg

    assert clock_text(WALL + 100_000_000) == "2023-11-14 22:13:20.1 UTC"
    assert clock_text(WALL + 999_999_999) == "2023-11-14 22:13:20.9 UTC"
    # Same tenth: the same picture; the next tenth: a different one (only the clock changed).
    assert first_frame(WALL + 20_000_000) == first_frame(WALL + 60_000_000)
    later = decode(first_frame(WALL + 100_000_000)).convert("RGB")
    assert ImageChops.difference(decode(first_frame(WALL)).convert("RGB"), later).getbbox()
