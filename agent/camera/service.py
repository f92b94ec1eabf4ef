"""The camera loop: one thread that reads frames and feeds the ring, the evidence logic and the
health logic, takes the still when a trigger arrives, and hands what happened to the agent.

The agent's main loop calls `trigger(key, at_ns)` (thread-safe) when a door opens, a PIR sees
motion, the enclosure is opened, the camera is covered (armed or not: agent.domain.guard.PICTURED)
or a snapshot command arrives, and drains `outputs`:
Observations (camera fault / recovered / covered / uncovered) and finished EvidenceSets. The
loop owns all camera state, so the pure parts need no locks; `step()` is one turn of the loop,
which is how tests drive it without threads or sleeps.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from agent.camera.base import Camera, CameraError, Frame
from agent.camera.evidence import Evidence, EvidenceSet, EvidenceState
from agent.camera.health import Health, look
from agent.camera.ring import FrameRing
from agent.domain.observation import Observation

log = logging.getLogger("jaga.agent.camera")


Output = Observation | EvidenceSet


class CameraLoop:
    """Owns one camera and everything derived from its frames."""

    def __init__(
        self,
        camera: Camera,
        *,
        ring: FrameRing | None = None,
        evidence: Evidence | None = None,
        health: Health | None = None,
        frame_timeout_s: float = 1.0,
        still_timeout_s: float = 5.0,
        mono_ns: Callable[[], int] = time.monotonic_ns,
        wake: Callable[[], None] | None = None,
        tap: Callable[[Frame], None] | None = None,
    ) -> None:
        """`tap`: also given every frame read (the live view; it must not block)."""
        self.camera = camera
        self._wake = wake
        self.tap = tap
        self.ring = ring or FrameRing.for_window()
        self.evidence = evidence or Evidence()
        self.health = health or Health()
        self.frame_timeout_s = frame_timeout_s
        self.still_timeout_s = still_timeout_s
        self._mono_ns = mono_ns
        self.outputs: queue.Queue[Output] = queue.Queue()
        self._triggers: queue.Queue[tuple[str, int]] = queue.Queue()
        self._evidence_state = EvidenceState()
        self._health_state = self.health.initial(mono_ns())
        self.frames_seen = 0
        self.reopens = 0

    @property
    def busy(self) -> bool:
        """Triggers whose pictures are still being gathered."""
        return bool(self._evidence_state.pending) or not self._triggers.empty()

    def trigger(self, key: str, at_ns: int) -> None:
        """Ask for an evidence set around at_ns (monotonic); `key` comes back on the set."""
        self._triggers.put((key, at_ns))

    def open(self) -> None:
        """Start the camera; a camera that cannot start now is retried by the health logic."""
        self._health_state = self.health.initial(self._mono_ns())
        try:
            self.camera.start()
        except CameraError as exc:
            log.error("camera did not start: %s; retrying after the stall time", exc)

    def close(self) -> None:
        self.camera.stop()

    def run(self, stop: threading.Event) -> None:
        """The thread body: open, step until stop is set, close."""
        self.open()
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def step(self) -> None:
        """Take stills for new triggers, read one frame, and let time pass for the logic."""
        self._take_triggers()
        try:
            got = self.camera.frame(self.frame_timeout_s)
        except CameraError as exc:
            log.warning("camera frame failed: %s", exc)
            got = None
        if got is not None:
            self.frames_seen += 1
            self.ring.push(got)
            if self.tap is not None:
                self.tap(got)
            self._evidence_state = self.evidence.frame(self._evidence_state, got)
            try:
                seen = look(got.jpeg)
            except OSError as exc:  # not a decodable JPEG: say so, skip the cover check
                log.warning("frame %d is not a readable JPEG: %s", got.seq, exc)
            else:
                self._health_state, out, _ = self.health.frame(
                    self._health_state, seen, got.mono_ns
                )
                self._emit(out)
        now = self._mono_ns()
        self._health_state, out, reopen = self.health.tick(self._health_state, now)
        self._emit(out)
        if reopen is not None:
            self._reopen(reopen.attempt)
        self._evidence_state, done = self.evidence.tick(self._evidence_state, now)
        self._emit(done)

    def _take_triggers(self) -> None:
        while True:
            try:
                key, at_ns = self._triggers.get_nowait()
            except queue.Empty:
                return
            state = self.evidence.trigger(self._evidence_state, key, at_ns, self.ring.frames())
            try:
                still: bytes | None = self.camera.still(self.still_timeout_s)
            except CameraError as exc:
                log.error("no still for %s: %s", key, exc)
                still = None
            self._evidence_state = self.evidence.still(state, key, still, self._mono_ns())

    def _reopen(self, attempt: int) -> None:
        self.reopens += 1
        log.warning("camera silent: reopening it (attempt %d)", attempt)
        try:
            self.camera.stop()
            self.camera.start()
        except CameraError as exc:
            log.error("camera reopen failed: %s", exc)

    def _emit(self, items: list[Observation] | list[EvidenceSet]) -> None:
        for item in items:
            self.outputs.put(item)
        if items and self._wake is not None:
            self._wake()  # e.g. put None on the agent's edge queue so its loop drains outputs
