"""The Raspberry Pi camera through picamera2, imported only when the camera is opened.

Streams: picamera2's "main" stream at low resolution in RGB888 for the ring and the evidence
(picamera2 makes PIL images of RGB formats only), and beside it the "lores" stream in YUV420 (the
only lores format a Pi 4's VC4 gives) at `lores_size` for the live view. A lores frame is copied
out of its request (about 115 kB at 320x240) and turned into RGB and JPEG by Pillow only when the
live view sends it (`Frame.live`), so an unwatched camera pays a copy, not an encode. The
sensor runs at `sensor_fps` (auto-exposure settles within a second) and the adapter samples it
at `fps`. The still is a mode switch to a full-resolution
still configuration and back (`switch_mode_and_capture_image`); frames pause for its duration.

Every capture passes a numeric `wait` (picamera2 then raises TimeoutError instead of blocking
forever on a dead camera); after a timeout the queued job is cancelled with
`cancel_all_and_flush()`, as picamera2 advises, so the camera can be closed and reopened.
On Raspberry Pi OS picamera2 comes from apt (python3-picamera2) into a venv made with
--system-site-packages.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image

from agent.camera import jpeg
from agent.camera.base import (
    DEFAULT_FRAME_TIMEOUT_S,
    DEFAULT_STILL_TIMEOUT_S,
    Camera,
    CameraError,
    Frame,
)
from kernel.units import S

log = logging.getLogger("jaga.agent.camera.picamera2")

US = 1_000_000


class Picamera2Camera:
    """Implements agent.camera.base.Camera with picamera2; library errors become CameraError."""

    def __init__(
        self,
        *,
        size: tuple[int, int] = (640, 480),
        fps: float = 2.0,
        sensor_fps: float = 10.0,
        still_size: tuple[int, int] | None = None,
        lores_size: tuple[int, int] | None = (320, 240),
        quality: int = jpeg.DEFAULT_QUALITY,
        still_quality: int = jpeg.DEFAULT_STILL_QUALITY,
        camera_num: int = 0,
        mono_ns: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if fps <= 0 or sensor_fps < fps:
            raise ValueError("fps must be positive and sensor_fps at least fps")
        self.size = size
        self.fps = fps
        self.sensor_fps = sensor_fps
        self.still_size = still_size
        # picamera2 refuses a lores stream larger than main.
        self.lores_size = (
            None
            if lores_size is None
            else (min(lores_size[0], size[0]), min(lores_size[1], size[1]))
        )
        self._lores: tuple[tuple[int, int], int] | None = None
        """The configured lores stream's (size, stride), known after configure."""
        self.quality = quality
        self.still_quality = still_quality
        self.camera_num = camera_num
        self._mono_ns = mono_ns
        self._sleep = sleep
        self._period_ns = int(S / fps)
        self._lock = threading.RLock()
        self._cam: Any = None
        self._still_config: Any = None
        self._next_due_ns = 0
        self._seq = 0

    def start(self) -> None:
        with self._lock:
            if self._cam is not None:
                return
            try:
                module = importlib.import_module("picamera2")
            except ImportError as exc:
                raise CameraError(
                    "picamera2 is not installed: on Raspberry Pi OS install python3-picamera2"
                    " and make the venv with --system-site-packages"
                ) from exc
            cam: Any = None
            try:
                cam = module.Picamera2(self.camera_num)
                frame_us = int(US / self.sensor_fps)
                lores = (
                    None
                    if self.lores_size is None
                    else {"size": self.lores_size, "format": "YUV420"}
                )
                video = cam.create_video_configuration(
                    main={"size": self.size, "format": "RGB888"},
                    lores=lores,
                    controls={"FrameDurationLimits": (frame_us, frame_us)},
                )
                still_main: dict[str, Any] = {"format": "RGB888"}
                if self.still_size is not None:
                    still_main["size"] = self.still_size
                self._still_config = cam.create_still_configuration(main=still_main)
                cam.configure(video)
                if lores is not None:
                    stream = cam.stream_configuration("lores")
                    self._lores = (tuple(stream["size"]), int(stream["stride"]))
                cam.start()
            except Exception as exc:
                if cam is not None:
                    with contextlib.suppress(Exception):
                        cam.close()
                raise CameraError(f"cannot open camera {self.camera_num}: {exc}") from exc
            self._cam = cam
            self._next_due_ns = self._mono_ns()

    def stop(self) -> None:
        with self._lock:
            cam, self._cam = self._cam, None
            if cam is None:
                return
            for step in (cam.stop, cam.close):
                try:
                    step()
                except Exception:  # a wedged camera must still be let go of
                    log.exception("camera %s did not %s cleanly", self.camera_num, step.__name__)

    def frame(self, timeout_s: float = DEFAULT_FRAME_TIMEOUT_S) -> Frame | None:
        self._require()
        now = self._mono_ns()
        wait_ns = self._next_due_ns - now
        if wait_ns > timeout_s * S:
            self._sleep(timeout_s)
            return None
        if wait_ns > 0:
            self._sleep(wait_ns / S)
        with self._lock:
            cam = self._require()
            try:
                request = cam.capture_request(wait=timeout_s)
            except TimeoutError:
                self._flush(cam)
                return None
            except Exception as exc:
                raise CameraError(f"frame capture failed: {exc}") from exc
            try:
                image = request.make_image("main")
                lores = None if self._lores is None else bytes(request.make_buffer("lores"))
                metadata = request.get_metadata()
            except Exception as exc:
                raise CameraError(f"frame capture failed: {exc}") from exc
            finally:
                request.release()
            now = self._mono_ns()
            due = self._next_due_ns
            late = now - due >= self._period_ns
            self._next_due_ns = now + self._period_ns if late else due + self._period_ns
            self._seq += 1
            live = None if lores is None or self._lores is None else self._live(lores, *self._lores)
            captured = _captured_at(metadata, now)
            return Frame(jpeg.encode(image, self.quality), captured, self._seq, live)

    def _live(self, buffer: bytes, size: tuple[int, int], stride: int) -> Callable[[], bytes]:
        quality = self.quality
        return lambda: jpeg.encode(yuv420_image(buffer, size, stride), quality)

    def still(self, timeout_s: float = DEFAULT_STILL_TIMEOUT_S) -> bytes:
        with self._lock:
            cam = self._require()
            try:
                image = cam.switch_mode_and_capture_image(
                    self._still_config, "main", wait=timeout_s
                )
            except TimeoutError as exc:
                self._flush(cam)
                raise CameraError(f"no still within {timeout_s} s") from exc
            except Exception as exc:
                raise CameraError(f"still capture failed: {exc}") from exc
            return jpeg.encode(image, self.still_quality)

    def _require(self) -> Any:
        if self._cam is None:
            raise CameraError("camera is not started")
        return self._cam

    def _flush(self, cam: Any) -> None:
        try:
            cam.cancel_all_and_flush()
        except Exception:
            log.exception("cancel_all_and_flush failed after a capture timeout")


def yuv420_image(buffer: bytes, size: tuple[int, int], stride: int) -> Image.Image:
    """An RGB image of a YUV420 buffer as picamera2 lays it out: the Y plane (`stride` bytes a
    row), then U and V at half size (stride / 2 a row); rows may be padded past the width."""
    w, h = size
    half, cw, ch = stride // 2, (w + 1) // 2, (h + 1) // 2
    u_at = stride * h
    v_at = u_at + half * ch
    if len(buffer) < v_at + half * ch:
        raise ValueError(f"a {w}x{h} YUV420 buffer of stride {stride} is {len(buffer)} bytes")
    view = buffer
    y = Image.frombuffer("L", (w, h), view[:u_at], "raw", "L", stride, 1)
    u = Image.frombuffer("L", (cw, ch), view[u_at:v_at], "raw", "L", half, 1)
    v = Image.frombuffer("L", (cw, ch), view[v_at : v_at + half * ch], "raw", "L", half, 1)
    planes = (y, u.resize((w, h)), v.resize((w, h)))
    return Image.merge("YCbCr", planes).convert("RGB")


def _captured_at(metadata: Any, received_ns: int) -> int:
    """The sensor's timestamp (CLOCK_MONOTONIC, as picamera2 itself compares it) when it is
    plausible, else the time the frame was received."""
    stamp = metadata.get("SensorTimestamp") if isinstance(metadata, dict) else None
    if isinstance(stamp, int) and received_ns - 10 * S <= stamp <= received_ns:
        return stamp
    return received_ns


if TYPE_CHECKING:

    def _implements_camera(camera: Picamera2Camera) -> Camera:
        return camera  # mypy checks Picamera2Camera against the Camera protocol here
