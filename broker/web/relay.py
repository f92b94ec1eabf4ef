"""The live frames' fan-out from the collector's MQTT thread to every open wall.

Bounded by construction, whatever the number of viewers: the relay keeps one frame per camera
(the latest; a frame is at most protocol.live.MAX_FRAME_BYTES), shared by reference, never a
queue per viewer. A viewer holds only the set of its cameras that have a newer frame than it
has sent; a slow browser skips frames instead of buffering them (the transport's flow control
makes its writer wait, and by then the slot holds a newer frame). Viewers are capped
(`max_viewers`) on top of the page's connection caps. Frames of a camera nobody asked for, or
faster than MAX_LIVE_FPS, or not JPEG, are dropped: a unit cannot flood the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from broker.collector.live import Camera, Leases
from protocol.commands import MAX_LIVE_FPS
from protocol.live import MAX_FRAME_BYTES, read_stamp

FRESH_NS = 3_000_000_000
"""A new viewer is shown a camera's last frame at once if it is at most this old."""
MIN_GAP_NS = int(1e9 / MAX_LIVE_FPS / 2)


@dataclass(frozen=True, slots=True)
class LiveFrame:
    site: str
    device: str
    jpeg: bytes
    captured_ns: int
    """The unit's wall clock at capture (its stamp), else when the collector received it."""
    received_ns: int


class Viewer:
    """One open wall: its cameras and which of them have a frame it has not sent yet."""

    __slots__ = ("cameras", "loop", "pending", "ready", "sent")

    def __init__(self, cameras: frozenset[Camera], loop: asyncio.AbstractEventLoop) -> None:
        self.cameras = cameras
        self.loop = loop
        self.pending: set[Camera] = set()
        self.ready = asyncio.Event()
        self.sent = 0

    def poke(self, camera: Camera) -> None:
        """On the viewer's loop: this camera has a new frame."""
        self.pending.add(camera)
        self.ready.set()


class Relay:
    """Latest frame per camera; viewers; the leases they imply (shared with LiveCommands)."""

    def __init__(
        self,
        leases: Leases,
        *,
        max_viewers: int = 1000,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.leases = leases
        self.lock = threading.Lock()
        self.max_viewers = max_viewers
        self.wake = wake
        self.clock = clock
        self._latest: dict[Camera, LiveFrame] = {}
        self._by_camera: dict[Camera, set[Viewer]] = {}
        self._viewers: set[Viewer] = set()
        self.relayed = 0
        self.bytes = 0
        self.dropped = 0
        self.refused = 0

    # the collector's MQTT thread ---------------------------------------------------------

    def on_frame(self, site: str, device: str, payload: bytes) -> None:
        """A frame from a unit's live topic; never raises, never blocks on a viewer."""
        now = self.clock()
        camera = (site, device)
        if len(payload) > MAX_FRAME_BYTES or not payload.startswith(b"\xff\xd8"):
            self.dropped += 1
            return
        stamp = read_stamp(payload)
        with self.lock:
            last = self._latest.get(camera)
            asked = camera in self.leases.streaming()
            if not asked or (last is not None and now - last.received_ns < MIN_GAP_NS):
                self.dropped += 1
                return
            frame = LiveFrame(site, device, payload, stamp.ts_ns if stamp else now, now)
            self._latest[camera] = frame
            self.leases.frame_seen(camera, len(payload))
            viewers = list(self._by_camera.get(camera, ()))
            self.relayed += 1
            self.bytes += len(payload)
        loops: dict[asyncio.AbstractEventLoop, list[Viewer]] = {}
        for v in viewers:
            loops.setdefault(v.loop, []).append(v)
        for loop, group in loops.items():
            with contextlib.suppress(RuntimeError):  # the page's loop closed: server stopping
                loop.call_soon_threadsafe(_poke_all, group, camera)

    # the page's loop ---------------------------------------------------------------------

    def open(self, cameras: frozenset[Camera], loop: asyncio.AbstractEventLoop) -> Viewer | None:
        """A wall starts watching these cameras; None when max_viewers are open already."""
        viewer = Viewer(cameras, loop)
        now = self.clock()
        with self.lock:
            if len(self._viewers) >= self.max_viewers:
                self.refused += 1
                return None
            self._viewers.add(viewer)
            for camera in cameras:
                self._by_camera.setdefault(camera, set()).add(viewer)
                self.leases.watch(camera)
                last = self._latest.get(camera)
                if last is not None and now - last.received_ns <= FRESH_NS:
                    viewer.pending.add(camera)
        if viewer.pending:
            viewer.ready.set()
        if self.wake is not None:
            self.wake()  # a camera newly watched is asked at once, not at the next tick
        return viewer

    def close(self, viewer: Viewer) -> None:
        now = self.clock()
        with self.lock:
            if viewer not in self._viewers:
                return
            self._viewers.discard(viewer)
            for camera in viewer.cameras:
                group = self._by_camera.get(camera)
                if group is not None:
                    group.discard(viewer)
                    if not group:
                        del self._by_camera[camera]
                self.leases.unwatch(camera, now)

    async def frames(self, viewer: Viewer, timeout_s: float) -> AsyncIterator[LiveFrame | None]:
        """Each camera's newest frame as it comes, once per frame; None after timeout_s of
        silence (the caller's chance to check the session)."""
        while True:
            try:
                await asyncio.wait_for(viewer.ready.wait(), timeout_s)
            except TimeoutError:
                yield None
                continue
            viewer.ready.clear()
            pending, viewer.pending = viewer.pending, set()
            for camera in sorted(pending):
                with self.lock:
                    frame = self._latest.get(camera)
                if frame is not None:
                    viewer.sent += 1
                    yield frame

    # figures -----------------------------------------------------------------------------

    @property
    def viewers(self) -> int:
        with self.lock:
            return len(self._viewers)

    @property
    def kept_bytes(self) -> int:
        """Bytes of frames the relay holds: one per camera, whatever the viewers."""
        with self.lock:
            return sum(len(f.jpeg) for f in self._latest.values())

    def close_all(self) -> None:
        """The server is stopping: every viewer's stream ends at its next frame or timeout."""
        with self.lock:
            viewers = list(self._viewers)
        for v in viewers:
            self.close(v)


def _poke_all(viewers: list[Viewer], camera: Camera) -> None:
    for v in viewers:
        v.poke(camera)
