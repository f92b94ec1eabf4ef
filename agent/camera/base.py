"""The camera seam: what the unit needs from a camera, whichever camera it is.

Pull, not callbacks: `frame(timeout_s)` returns the next low-resolution frame or None. The caller's
loop (one thread, owned by the composition root) sets the pace, so there is no hidden thread in
an adapter, a slow consumer reads fewer frames instead of queueing them without bound, a silent
camera shows up as None (health decides what that means), and tests drive a camera frame by frame
with their own clock. Stills come from the same thread, so an adapter never has to arbitrate a
mode switch against a frame capture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

DEFAULT_FRAME_TIMEOUT_S = 1.0
DEFAULT_STILL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Frame:
    """One low-resolution frame: JPEG bytes, monotonic capture time, and the camera's count."""

    jpeg: bytes
    mono_ns: int
    seq: int
    live: Callable[[], bytes] | None = None
    """The JPEG of the camera's own low-resolution stream, made only when called (the live view
    calls it for the frames it sends); None: the camera has no such stream, live sends `jpeg`."""


class CameraError(Exception):
    """The camera failed (missing, unplugged, driver error); health decides when to reopen it."""


class Camera(Protocol):
    """A camera the unit can open, read and close; every implementation ships in agent.camera."""

    def start(self) -> None:
        """Open and start streaming; raises CameraError if the camera cannot be opened."""
        ...

    def stop(self) -> None:
        """Stop and release the camera; safe to call twice or after a failed start."""
        ...

    def frame(self, timeout_s: float = DEFAULT_FRAME_TIMEOUT_S) -> Frame | None:
        """The next frame at the configured rate, or None if none came within timeout_s."""
        ...

    def still(self, timeout_s: float = DEFAULT_STILL_TIMEOUT_S) -> bytes:
        """A full-resolution JPEG taken now; raises CameraError if it cannot be taken in time."""
        ...
