"""A camera made of Pillow drawings: real JPEGs for the simulator, the demo and the tests.

Each frame shows the unit name, the wall time to the tenth of a second and the frame number over
a scene with a moving bar, so consecutive frames differ, a person can tell them apart, and a guard
watching the live wall can read the delay against a clock. `stall()` makes the camera
go silent and `cover()` turns frames into near-uniform dark noise, so health logic can be driven
end to end. Time comes from the clocks passed in; `sleep` is how the camera waits for its next
frame, so a test that passes a fake clock and a sleep that advances it never waits for real.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from agent.camera import jpeg
from agent.camera.base import (
    DEFAULT_FRAME_TIMEOUT_S,
    DEFAULT_STILL_TIMEOUT_S,
    Camera,
    CameraError,
    Frame,
)
from kernel.units import S


class SimulatedCamera:
    """Implements agent.camera.base.Camera without hardware."""

    def __init__(
        self,
        unit: str,
        *,
        size: tuple[int, int] = (640, 480),
        still_size: tuple[int, int] = (1920, 1080),
        fps: float = 2.0,
        quality: int = jpeg.DEFAULT_QUALITY,
        still_quality: int = jpeg.DEFAULT_STILL_QUALITY,
        mono_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.unit = unit
        self.size = size
        self.still_size = still_size
        self.fps = fps
        self.quality = quality
        self.still_quality = still_quality
        self._mono_ns = mono_ns
        self._wall_ns = wall_ns
        self._sleep = sleep
        self._random = random.Random(seed)
        self._period_ns = int(S / fps)
        self._lock = threading.Lock()
        self._started = False
        self._stalled = False
        self._covered = False
        self._next_due_ns = 0
        self._seq = 0
        self.starts = 0
        self.stops = 0

    # what tests and the simulator do to the camera ---------------------------------------

    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) delivering frames, as a hung driver or a loose ribbon cable would."""
        with self._lock:
            self._stalled = stalled

    def cover(self, covered: bool = True) -> None:
        """Put (or take away) a hand over the lens: frames become near-uniform and dark."""
        with self._lock:
            self._covered = covered

    @property
    def stalled(self) -> bool:
        return self._stalled

    @property
    def covered(self) -> bool:
        return self._covered

    # the Camera protocol -----------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._started = True
            self._next_due_ns = self._mono_ns()
            self.starts += 1

    def stop(self) -> None:
        with self._lock:
            if self._started:
                self.stops += 1
            self._started = False

    def frame(self, timeout_s: float = DEFAULT_FRAME_TIMEOUT_S) -> Frame | None:
        if not self._started:
            raise CameraError("simulated camera is not started")
        now = self._mono_ns()
        wait_ns = self._next_due_ns - now
        if self._stalled or wait_ns > timeout_s * S:
            self._sleep(timeout_s)
            return None
        if wait_ns > 0:
            self._sleep(wait_ns / S)
            now = self._mono_ns()
        # A late reader gets one frame now, not a burst that catches up on the missed ones.
        due = self._next_due_ns
        late = now - due >= self._period_ns
        self._next_due_ns = now + self._period_ns if late else due + self._period_ns
        self._seq += 1
        image = self._dark(self.size) if self._covered else self._scene(self.size, self._seq)
        return Frame(jpeg.encode(image, self.quality), now, self._seq)

    def still(self, timeout_s: float = DEFAULT_STILL_TIMEOUT_S) -> bytes:
        if not self._started:
            raise CameraError("simulated camera is not started")
        if self._stalled:
            self._sleep(timeout_s)
            raise CameraError(f"no still within {timeout_s} s: the camera is stalled")
        if self._covered:
            return jpeg.encode(self._dark(self.still_size), self.still_quality)
        return jpeg.encode(self._scene(self.still_size, self._seq, still=True), self.still_quality)

    # drawing -----------------------------------------------------------------------------

    def _scene(self, size: tuple[int, int], number: int, *, still: bool = False) -> Image.Image:
        w, h = size
        image = Image.new("RGB", size, (96, 104, 112))
        draw = ImageDraw.Draw(image)
        # A warehouse wall, a floor, a dark doorway, and a bar that moves with the frame number.
        draw.rectangle((0, h * 2 // 3, w, h), fill=(168, 156, 136))
        draw.rectangle((w // 3, h // 6, w * 2 // 3, h * 2 // 3), fill=(24, 24, 28))
        draw.rectangle((w // 3, h // 6, w * 2 // 3, h * 2 // 3), outline=(220, 210, 170), width=4)
        x = (number * w // 17) % w
        draw.rectangle((x, h // 2, x + w // 12, h // 2 + h // 10), fill=(220, 80, 40))
        font = _font(max(10, h // 24))
        lines = [
            self.unit,
            clock_text(self._wall_ns()),
            f"{'still' if still else 'frame'} {number}",
        ]
        for i, line in enumerate(lines):
            draw.text((8, 8 + i * (h // 20)), line, fill=(255, 255, 255), font=font)
        return image

    def _dark(self, size: tuple[int, int]) -> Image.Image:
        # A hand over the lens: sensor noise of a few levels around black.
        base = self._random.randint(6, 14)
        noise = Image.effect_noise(size, 2.0)
        return noise.point(lambda v: max(0, min(255, v - 128 + base))).convert("RGB")


def clock_text(wall_ns: int) -> str:
    """The wall time to the tenth of a second: beside a viewer's own clock it shows the delay."""
    seconds, rest = divmod(wall_ns, S)
    day = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{day}.{rest * 10 // S} UTC"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1
    except TypeError:  # Pillow 9.4 (bookworm): the fixed bitmap font
        return ImageFont.load_default()


if TYPE_CHECKING:

    def _implements_camera(camera: SimulatedCamera) -> Camera:
        return camera  # mypy checks SimulatedCamera against the Camera protocol here
