"""The picamera2 adapter against a recording fake of the picamera2 module.

The fake mirrors the real signatures of the calls the adapter may make (picamera2.Picamera2 in
raspberrypi/picamera2: create_video_configuration, create_still_configuration, configure,
stream_configuration, start, capture_request -> CompletedRequest.make_image/make_buffer/
get_metadata/release, switch_mode_and_capture_image, cancel_all_and_flush, stop, close) and the
rules the real one enforces (configure before start, stream config keys, even sizes, RGB formats
for PIL images, a YUV lores no larger than main); lores buffers are laid out as libcamera does
(rows padded to a 64-byte stride, then U and V at half size). Any other attribute raises, a wrong
keyword raises TypeError, a capture without a numeric timeout on a hung camera fails the test
instead of blocking.
"""

from __future__ import annotations

import importlib
import io
import itertools
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from agent.camera.base import CameraError

S = 1_000_000_000
SENSOR = (4608, 2592)
STREAM_KEYS = ("format", "size", "stride", "preserve_ar")
PIL_FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888")
LORES_FORMATS = ("YUV420", "YVU420", "NV12", "NV21")


def stride_of(width: int) -> int:
    return (width + 63) // 64 * 64


def yuv420(image: Image.Image, stride: int) -> bytes:
    """The image as a YUV420 buffer with padded rows, as make_buffer returns it."""
    w, h = image.size
    y, u, v = image.convert("YCbCr").split()
    half = (w // 2, h // 2)
    out = bytearray()
    for plane, row in ((y, stride), (u.resize(half), stride // 2), (v.resize(half), stride // 2)):
        data, width = plane.tobytes(), plane.size[0]
        for r in range(plane.size[1]):
            out += data[r * width : (r + 1) * width].ljust(row, b"\xff")
    return bytes(out)


class Clock:
    def __init__(self) -> None:
        self.now = 5_000 * S

    def mono_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * S)


class FakeRequest:
    def __init__(self, cam: FakePicamera2, image: Image.Image, timestamp_ns: int) -> None:
        self._cam = cam
        self._image = image
        self._timestamp_ns = timestamp_ns
        self.released = False

    def make_image(
        self, name: str, width: int | None = None, height: int | None = None
    ) -> Image.Image:
        self._cam.record("request.make_image", name, width=width, height=height)
        assert not self.released, "request used after release"
        stream = self._cam.config.get(name) if self._cam.config else None
        if stream is None:
            raise RuntimeError(f"stream {name} not configured")
        if stream["format"] not in PIL_FORMATS:
            raise RuntimeError(f"Stream format {stream['format']} not supported for PIL images")
        return self._image

    def make_buffer(self, name: str) -> bytes:
        self._cam.record("request.make_buffer", name)
        assert not self.released, "request used after release"
        stream = self._cam.config.get(name) if self._cam.config else None
        if stream is None:
            raise RuntimeError(f"stream {name} not configured")
        return yuv420(self._image.resize(stream["size"]), stream["stride"])

    def get_metadata(self) -> dict[str, Any]:
        self._cam.record("request.get_metadata")
        return {"SensorTimestamp": self._timestamp_ns, "ExposureTime": 20000}

    def release(self) -> None:
        self._cam.record("request.release")
        assert not self.released, "request released twice"
        self.released = True


class FakePicamera2:
    """Strict stand-in for picamera2.Picamera2; records every call on the shared log."""

    log: list[tuple[Any, ...]] = []
    instances: list[FakePicamera2] = []
    fail_open = False
    hang = False
    clock: Clock | None = None

    def __init__(self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None):
        self.camera_num = camera_num
        self.record("Picamera2", camera_num)
        if FakePicamera2.fail_open:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.sensor_resolution = SENSOR
        self.is_open = True
        self.started = False
        self.config: dict[str, Any] | None = None
        self._made: list[dict[str, Any]] = []
        self.frames = 0
        self.outstanding: list[FakeRequest] = []
        FakePicamera2.instances.append(self)

    def record(self, name: str, *args: Any, **kwargs: Any) -> None:
        FakePicamera2.log.append((name, *args, *sorted(kwargs.items())))

    def _stream(self, base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        for key in update:
            if key not in STREAM_KEYS:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ...")
        stream = {**base, **update}
        w, h = stream["size"]
        if w % 2 or h % 2:
            raise RuntimeError("width and height should be even")
        return stream

    def _config(
        self,
        use_case: str,
        main: dict[str, Any],
        default: dict[str, Any],
        controls: dict[str, Any],
        buffer_count: int,
        lores: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        assert self.is_open, "Camera not opened"
        main_stream = self._stream(default, main)
        lores_stream = None
        if lores is not None:
            lores_stream = self._stream({"format": "YUV420", "size": main_stream["size"]}, lores)
            if lores_stream["format"] not in LORES_FORMATS:
                raise RuntimeError("lores stream must be YUV")
            if any(a > b for a, b in zip(lores_stream["size"], main_stream["size"], strict=True)):
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            lores_stream["stride"] = stride_of(lores_stream["size"][0])
        config = {
            "use_case": use_case,
            "main": main_stream,
            "lores": lores_stream,
            "raw": None,
            "controls": dict(controls),
            "buffer_count": buffer_count,
        }
        self._made.append(config)
        return config

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: Any = None,
        raw: Any = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: Any = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        self.record("create_video_configuration", main=main, controls=controls, lores=lores)
        return self._config(
            use_case,
            main or {},
            {"format": "XBGR8888", "size": (1280, 720)},
            controls or {},
            buffer_count,
            lores,
        )

    def create_still_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: Any = None,
        raw: Any = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 1,
        controls: dict[str, Any] | None = None,
        display: str | None = None,
        encode: str | None = None,
        queue: bool = True,
        sensor: Any = None,
        use_case: str = "still",
    ) -> dict[str, Any]:
        self.record("create_still_configuration", main=main, controls=controls)
        return self._config(
            use_case, main or {}, {"format": "BGR888", "size": SENSOR}, controls or {}, buffer_count
        )

    def configure(self, camera_config: Any = None) -> None:
        self.record("configure", camera_config["use_case"])
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        assert any(camera_config is c for c in self._made), "configure() with a foreign config"
        self.config = camera_config

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        self.record("stream_configuration", name)
        assert self.config is not None, "stream_configuration before configure"
        stream: dict[str, Any] = self.config[name]
        return stream

    def start(self, config: Any = None, show_preview: bool | None = False) -> None:
        self.record("start")
        if self.config is None and config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.record("stop")
        self.started = False

    def close(self) -> None:
        self.record("close")
        self.started = False
        self.is_open = False

    def cancel_all_and_flush(self) -> None:
        self.record("cancel_all_and_flush")

    def _wait(self, wait: Any) -> None:
        if not self.started:
            raise RuntimeError("camera is not running")  # the real one would block forever
        if FakePicamera2.hang:
            if wait is None or wait is True:
                pytest.fail("capture without a numeric timeout on a hung camera blocks forever")
            raise TimeoutError()

    def capture_request(
        self, wait: Any = None, signal_function: Any = None, flush: Any = None
    ) -> FakeRequest:
        self.record("capture_request", wait=wait)
        self._wait(wait)
        self.frames += 1
        assert self.config is not None
        size = self.config["main"]["size"]
        image = Image.new("RGB", size, (self.frames * 40 % 256, 90, 120))
        clock = FakePicamera2.clock
        stamp = clock.now - 30_000_000 if clock else 0
        request = FakeRequest(self, image, stamp)
        self.outstanding.append(request)
        return request

    def switch_mode_and_capture_image(
        self,
        camera_config: Any,
        name: str = "main",
        wait: Any = None,
        signal_function: Any = None,
        delay: int = 0,
    ) -> Image.Image:
        self.record("switch_mode_and_capture_image", camera_config["use_case"], name, wait=wait)
        self._wait(wait)
        assert any(camera_config is c for c in self._made), "switch to a foreign config"
        return Image.new("RGB", camera_config[name]["size"], (200, 180, 160))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakePicamera2]]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.log = []
    FakePicamera2.instances = []
    FakePicamera2.fail_open = False
    FakePicamera2.hang = False
    FakePicamera2.clock = None
    yield FakePicamera2


def make(clock: Clock, **kwargs: Any) -> Any:
    from agent.camera.picamera2_adapter import Picamera2Camera

    FakePicamera2.clock = clock
    return Picamera2Camera(mono_ns=clock.mono_ns, sleep=clock.sleep, **kwargs)


def calls() -> list[str]:
    return [c[0] for c in FakePicamera2.log]


def test_picamera2_is_imported_only_when_the_camera_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    adapter = importlib.reload(importlib.import_module("agent.camera.picamera2_adapter"))
    assert "picamera2" not in sys.modules
    cam = adapter.Picamera2Camera()
    with pytest.raises(CameraError, match="python3-picamera2"):
        cam.start()


def test_start_configures_a_low_res_video_stream_and_a_full_res_still(
    fake: type[FakePicamera2],
) -> None:
    cam = make(Clock(), size=(640, 480), fps=2.0, sensor_fps=10.0)
    cam.start()
    assert FakePicamera2.log == [
        ("Picamera2", 0),
        (
            "create_video_configuration",
            ("controls", {"FrameDurationLimits": (100_000, 100_000)}),
            ("lores", {"size": (320, 240), "format": "YUV420"}),
            ("main", {"size": (640, 480), "format": "RGB888"}),
        ),
        ("create_still_configuration", ("controls", None), ("main", {"format": "RGB888"})),
        ("configure", "video"),
        ("stream_configuration", "lores"),
        ("start",),
    ]


def test_frames_are_captured_as_jpegs_at_the_configured_rate_and_requests_released(
    fake: type[FakePicamera2],
) -> None:
    clock = Clock()
    cam = make(clock, size=(320, 240), fps=2.0, lores_size=(160, 120))
    cam.start()
    frames = [cam.frame(timeout_s=1.0) for _ in range(3)]
    assert all(f is not None for f in frames)
    images = [Image.open(io.BytesIO(f.jpeg)) for f in frames if f is not None]
    assert {(i.format, i.size) for i in images} == {("JPEG", (320, 240))}
    assert [f.seq for f in frames if f is not None] == [1, 2, 3]
    # Paced at 2 fps by the adapter; timed by the sensor's timestamp (30 ms before receipt).
    times = [f.mono_ns for f in frames if f is not None]
    assert [b - a for a, b in itertools.pairwise(times)] == [S // 2, S // 2]
    assert times[-1] == clock.now - 30_000_000
    per_frame = [
        "capture_request",
        "request.make_image",
        "request.make_buffer",
        "request.get_metadata",
        "request.release",
    ]
    assert calls()[6:] == per_frame * 3
    assert ("capture_request", ("wait", 1.0)) in FakePicamera2.log
    assert all(r.released for r in FakePicamera2.instances[0].outstanding)


def test_the_still_is_a_mode_switch_capture_at_sensor_resolution(
    fake: type[FakePicamera2],
) -> None:
    cam = make(Clock())
    cam.start()
    still = cam.still(timeout_s=4.0)
    assert FakePicamera2.log[-1] == (
        "switch_mode_and_capture_image",
        "still",
        "main",
        ("wait", 4.0),
    )
    image = Image.open(io.BytesIO(still))
    assert (image.format, image.size) == ("JPEG", SENSOR)


def test_stop_stops_and_closes_and_a_stopped_camera_refuses_to_capture(
    fake: type[FakePicamera2],
) -> None:
    cam = make(Clock())
    cam.start()
    cam.stop()
    assert calls()[-2:] == ["stop", "close"]
    cam.stop()  # twice is harmless
    assert calls()[-2:] == ["stop", "close"]
    with pytest.raises(CameraError):
        cam.frame()
    with pytest.raises(CameraError):
        cam.still()


def test_a_hung_camera_times_out_flushes_and_is_reopened_after_the_fault(
    fake: type[FakePicamera2],
) -> None:
    cam = make(Clock())
    cam.start()
    FakePicamera2.hang = True
    assert cam.frame(timeout_s=1.0) is None
    assert calls()[-2:] == ["capture_request", "cancel_all_and_flush"]
    with pytest.raises(CameraError, match="no still"):
        cam.still(timeout_s=2.0)
    assert calls()[-1] == "cancel_all_and_flush"
    # Health says fault -> the caller reopens: a fresh Picamera2, configured and started.
    cam.stop()
    FakePicamera2.hang = False
    cam.start()
    assert len(FakePicamera2.instances) == 2
    assert not FakePicamera2.instances[0].is_open
    assert calls()[-6:] == [
        "Picamera2",
        "create_video_configuration",
        "create_still_configuration",
        "configure",
        "stream_configuration",
        "start",
    ]
    assert cam.frame(timeout_s=1.0) is not None


def test_a_camera_that_cannot_be_opened_is_a_camera_error(fake: type[FakePicamera2]) -> None:
    FakePicamera2.fail_open = True
    cam = make(Clock())
    with pytest.raises(CameraError, match="cannot open camera 0"):
        cam.start()
    FakePicamera2.fail_open = False
    cam.start()
    assert cam.frame(timeout_s=1.0) is not None


def test_the_fake_is_strict_so_a_wrong_call_fails(fake: type[FakePicamera2]) -> None:
    cam = FakePicamera2()
    with pytest.raises(AttributeError):
        cam.capture_jpeg()  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        cam.capture_request(timeout=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="Bad key"):
        cam.create_video_configuration(main={"resolution": (640, 480)})
    with pytest.raises(RuntimeError, match="configured"):
        cam.start()
    config = cam.create_video_configuration(main={"size": (640, 480), "format": "YUV420"})
    cam.configure(config)
    cam.start()
    with pytest.raises(RuntimeError, match="not supported for PIL"):
        cam.capture_request(wait=1.0).make_image("main")


def test_the_live_view_gets_the_lores_stream_as_rgb_jpegs_made_only_when_asked(
    fake: type[FakePicamera2],
) -> None:
    # 312 wide: libcamera pads its rows to a stride of 320, which the conversion must skip.
    cam = make(Clock(), size=(640, 480), lores_size=(312, 234))
    cam.start()
    made = FakePicamera2.instances[0].config
    assert made is not None and made["lores"] == {
        "format": "YUV420",
        "size": (312, 234),
        "stride": 320,
    }
    frame = cam.frame(timeout_s=1.0)
    assert frame is not None and frame.live is not None
    assert Image.open(io.BytesIO(frame.jpeg)).size == (640, 480)  # the ring keeps main
    assert calls()[-1] == "request.release"  # lores was copied out before the release
    live = Image.open(io.BytesIO(frame.live()))
    assert (live.format, live.size) == ("JPEG", (312, 234))
    # The fake's frame 1 is (40, 90, 120) everywhere and its padding is white: the same colour
    # in every corner, so neither the planes nor the padded rows were misread.
    rgb = live.convert("RGB")
    for xy in ((2, 2), (309, 2), (2, 231), (309, 231), (156, 117)):
        pixel = rgb.getpixel(xy)
        assert isinstance(pixel, tuple), pixel
        assert all(abs(a - b) <= 8 for a, b in zip(pixel, (40, 90, 120), strict=True)), (xy, pixel)


def test_without_a_lores_stream_the_live_view_sends_the_main_frames(
    fake: type[FakePicamera2],
) -> None:
    cam = make(Clock(), lores_size=None)
    cam.start()
    frame = cam.frame(timeout_s=1.0)
    assert frame is not None and frame.live is None
    assert "request.make_buffer" not in calls()
    assert FakePicamera2.instances[0].config["lores"] is None  # type: ignore[index]
