"""Live view on the unit: frames flow only while the collector holds a lease on them.

`Lease` is pure (time passed in): a signed `live` command grants frames until `lease_s` from
its arrival at `fps` (capped by the unit's own `max_fps`); a lease nobody renews runs out and
the frames stop by themselves, whatever became of the network or the collector. `LiveTap` is
the adapter the camera loop hands every frame to: it asks the lease whether this one goes,
stamps it with its capture time and publishes it through a callable (QoS 0, never the outbox).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.camera.base import Frame
from kernel.units import S
from protocol.live import MAX_FRAME_BYTES, stamp

log = logging.getLogger("jaga.agent.live")


@dataclass(frozen=True, slots=True)
class LeaseState:
    """Frames until `until_ns` (monotonic), one at most every `period_ns`, the next from
    `next_ns`; `until_ns` 0: no lease."""

    until_ns: int = 0
    period_ns: int = 0
    next_ns: int = 0


IDLE = LeaseState()


@dataclass(frozen=True, slots=True)
class Lease:
    """How the unit honours live commands: at most `max_fps`, at most `max_lease_s` ahead."""

    max_fps: float = 2.0
    max_lease_s: float = 60.0

    def grant(self, state: LeaseState, lease_s: float, fps: float, now_ns: int) -> LeaseState:
        """A live command arrived at now_ns: frames until lease_s from now (0: stop now)."""
        if lease_s <= 0 or fps <= 0:
            return IDLE
        period = int(S / min(fps, self.max_fps))
        until = now_ns + int(min(lease_s, self.max_lease_s) * S)
        # A renewal keeps the rhythm; a fresh lease sends the next frame at once.
        following = state.next_ns if state.until_ns > now_ns else now_ns
        return LeaseState(until, period, min(following, now_ns + period))

    def frame(self, state: LeaseState, now_ns: int) -> tuple[LeaseState, bool]:
        """(next state, whether a frame captured now goes out)."""
        if now_ns >= state.until_ns:
            return (IDLE if state.until_ns else state), False
        if now_ns < state.next_ns:
            return state, False
        following = state.next_ns + state.period_ns
        if following <= now_ns:  # late: one frame now, no burst to catch up
            following = now_ns + state.period_ns
        return LeaseState(state.until_ns, state.period_ns, following), True

    def active(self, state: LeaseState, now_ns: int) -> bool:
        return now_ns < state.until_ns


Send = Callable[[bytes], bool]
"""Publish one stamped frame on the unit's live topic (QoS 0); False: not sent."""


class LiveTap:
    """The camera loop's frames, out to the live topic while a lease runs (thread-safe)."""

    def __init__(
        self,
        send: Send,
        *,
        mono_ns: Callable[[], int],
        wall_ns: Callable[[], int],
        lease: Lease | None = None,
        max_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self._send = send
        self._mono_ns = mono_ns
        self._wall_ns = wall_ns
        self.lease = lease or Lease()
        self.max_bytes = max_bytes
        self._state = IDLE
        self._lock = threading.Lock()
        self.sent = 0
        self.sent_bytes = 0
        self.too_big = 0

    def grant(self, lease_s: float, fps: float) -> None:
        """A live command was accepted now."""
        with self._lock:
            self._state = self.lease.grant(self._state, lease_s, fps, self._mono_ns())

    @property
    def streaming(self) -> bool:
        with self._lock:
            return self.lease.active(self._state, self._mono_ns())

    def offer(self, frame: Frame) -> None:
        """A frame the camera just read: out if the lease wants one now."""
        now = self._mono_ns()
        with self._lock:
            self._state, due = self.lease.frame(self._state, now)
        if not due:
            return
        try:
            picture = frame.jpeg if frame.live is None else frame.live()
        except (OSError, ValueError) as exc:  # a bad lores buffer costs this frame, not the loop
            log.warning("live frame %d not encoded: %s", frame.seq, exc)
            return
        if len(picture) > self.max_bytes:
            self.too_big += 1
            return
        captured = self._wall_ns() - max(0, now - frame.mono_ns)
        payload = stamp(picture, captured, frame.seq)
        if self._send(payload):
            self.sent += 1
            self.sent_bytes += len(payload)
