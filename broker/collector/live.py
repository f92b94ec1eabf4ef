"""Live view leases, the collector's side: which cameras someone watches, and the signed `live`
commands that keep their frames flowing (and stop them).

`Leases` is pure (time passed in): the page says watch/unwatch, `due(now)` says which units
to ask now: a camera newly watched at once, a watched one every `renew_s` (its lease is
`lease_s`, so a unit stops by itself within `lease_s` of the last renewal), one nobody has
watched for `linger_s` gets a stop. The frame rate asked for keeps each site's frames under
its uplink budget (a rural site's link is often 4G): budget / (cameras watched * the bytes
of a frame seen lately), never above `fps`. `LiveCommands` signs and publishes them from a
thread of its own, so neither the page nor the storage loop ever waits for a signature.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.collector.asks import Signer, signed_command
from kernel.units import S
from protocol.commands import MIN_LIVE_FPS, Live, Snapshot

log = logging.getLogger("jaga.collector.live")

Camera = tuple[str, str]
"""(site, device)"""


@dataclass(frozen=True, slots=True)
class LiveAsk:
    """A `live` command to send: frames for lease_s at fps (lease_s 0: stop)."""

    site: str
    device: str
    lease_s: float
    fps: float


@dataclass
class Leases:
    """Who watches which camera, and when each unit must hear from us. Not thread-safe."""

    lease_s: float = 10.0
    renew_s: float = 3.0
    linger_s: float = 2.0
    fps: float = 2.0
    site_budget_bytes_s: int | None = None
    watchers: Counter[Camera] = field(default_factory=Counter)
    _asked: dict[Camera, tuple[int, float]] = field(default_factory=dict)
    _left: dict[Camera, int] = field(default_factory=dict)
    _frame_bytes: dict[Camera, float] = field(default_factory=dict)

    def watch(self, camera: Camera) -> None:
        self.watchers[camera] += 1
        self._left.pop(camera, None)

    def unwatch(self, camera: Camera, now_ns: int) -> None:
        self.watchers[camera] -= 1
        if self.watchers[camera] <= 0:
            del self.watchers[camera]
            self._left[camera] = now_ns

    def frame_seen(self, camera: Camera, size: int) -> None:
        """A frame of this size came: the budget's estimate of a frame (moving average)."""
        old = self._frame_bytes.get(camera)
        self._frame_bytes[camera] = size if old is None else 0.8 * old + 0.2 * size

    def rate(self, site: str) -> float:
        """Frames per second for each watched camera of site, within its uplink budget."""
        if self.site_budget_bytes_s is None:
            return self.fps
        watched = [c for c in self.watchers if c[0] == site]
        total = sum(self._frame_bytes.get(c, 30_000.0) for c in watched)
        if total <= 0:
            return self.fps
        return round(max(MIN_LIVE_FPS, min(self.fps, self.site_budget_bytes_s / total)), 2)

    def due(self, now_ns: int) -> list[LiveAsk]:
        """The commands to send now; what they ask is taken as sent."""
        out: list[LiveAsk] = []
        for camera in sorted(self.watchers):
            fps = self.rate(camera[0])
            asked = self._asked.get(camera)
            if asked is None or now_ns - asked[0] >= self.renew_s * S or asked[1] != fps:
                self._asked[camera] = (now_ns, fps)
                out.append(LiveAsk(*camera, self.lease_s, fps))
        for camera, left in sorted(self._left.items()):
            if now_ns - left >= self.linger_s * S:
                del self._left[camera]
                if self._asked.pop(camera, None) is not None:
                    out.append(LiveAsk(*camera, 0.0, self.fps))
        return out

    def streaming(self) -> set[Camera]:
        """Cameras asked to stream whose lease may still run."""
        return set(self._asked)


Send = Callable[[str, bytes], bool]
"""Publishes (topic, payload) now; False when it could not."""


class LiveCommands:
    """Sends what `Leases.due` says, twice a second or when woken, on a thread of its own."""

    def __init__(
        self,
        leases: Leases,
        lock: threading.Lock,
        signer: Signer | None,
        publish: Send,
        *,
        tick_s: float = 0.5,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.leases = leases
        self.lock = lock
        self.signer = signer
        self.publish = publish
        self.tick_s = tick_s
        self.clock = clock
        self.sent = 0
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-leases", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the lease thread (a collector closed without running never started it)."""
        self._stop.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def turn(self) -> list[LiveAsk]:
        """Send what is due now (also how tests drive it)."""
        with self.lock:
            asks = self.leases.due(self.clock())
        for ask in asks:
            self._send(ask)
        return asks

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.turn()
            except Exception:  # a bad key or a closed link must not end the live view for good
                log.exception("live view: sending leases failed; retrying")
            self.wake.wait(self.tick_s)
            self.wake.clear()

    def _send(self, ask: LiveAsk) -> None:
        signed = signed_command(
            self.signer,
            ask.site,
            ask.device,
            "live",
            lambda by: Live(by=by, ts=self.clock(), lease_s=ask.lease_s, fps=ask.fps),
        )
        if signed is not None and self.publish(*signed):
            self.sent += 1

    def save(self, site: str, device: str, cause: str) -> bool:
        """A signed snapshot command: a real evidence set, its cause who asked (guard:budi)."""
        signed = signed_command(
            self.signer,
            site,
            device,
            "snapshot",
            lambda by: Snapshot(by=by, ts=self.clock(), cause=cause),
        )
        return signed is not None and self.publish(*signed)
