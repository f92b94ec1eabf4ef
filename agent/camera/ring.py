"""The last few seconds of low-resolution frames, bounded by count and by bytes.

Frames leave oldest first when either bound would be passed, so a burst of large frames (a busy,
well-lit scene) cannot grow memory past `max_bytes`. Not thread-safe: one camera loop owns it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from agent.camera.base import Frame

DEFAULT_FPS = 2.0
DEFAULT_SECONDS = 10.0
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class FrameRing:
    """Recent frames, oldest first."""

    def __init__(self, max_frames: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("a ring keeps at least one frame and one byte")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self.dropped = 0
        """Frames pushed out by a bound or refused for being larger than the whole ring."""

    @classmethod
    def for_window(
        cls,
        fps: float = DEFAULT_FPS,
        seconds: float = DEFAULT_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> FrameRing:
        """A ring holding `seconds` of frames at `fps` (2 x 10 by default)."""
        return cls(max(1, round(fps * seconds)), max_bytes)

    def push(self, frame: Frame) -> bool:
        """Keep a frame, evicting the oldest as needed; False if it alone exceeds max_bytes."""
        size = len(frame.jpeg)
        if size > self.max_bytes:
            self.dropped += 1
            return False
        while self._frames and (
            len(self._frames) >= self.max_frames or self._bytes + size > self.max_bytes
        ):
            self._bytes -= len(self._frames.popleft().jpeg)
            self.dropped += 1
        self._frames.append(frame)
        self._bytes += size
        return True

    def between(self, first_ns: int, last_ns: int) -> tuple[Frame, ...]:
        """Frames captured in [first_ns, last_ns], oldest first."""
        return tuple(f for f in self._frames if first_ns <= f.mono_ns <= last_ns)

    def frames(self) -> tuple[Frame, ...]:
        return tuple(self._frames)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[Frame]:
        return iter(tuple(self._frames))
