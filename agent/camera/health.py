"""Camera health as pure logic: a camera that goes silent is a fault, one that sees nothing is
covered. (state, frame or now) -> (state, observations, action); the caller owns the clock.

Stall: no frame for `stall_ns` -> `fault` (timed when the silence crossed the limit) and a
Reopen action; while the fault lasts, Reopen again with a doubling back-off up to
`reopen_max_ns`; the first frame after it -> `recovered`.

Cover: a frame whose luminance standard deviation is below `cover_below` looks like a hand, tape
or paint over the lens. `cover_frames` such frames in a row -> `covered` (timed at the first of
them); then `uncover_frames` frames in a row above `uncover_above` -> `uncovered`. Two
thresholds and two counts are the hysteresis: a scene hovering near one threshold cannot flap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

from PIL import Image, ImageStat

from agent.domain.observation import Observation
from kernel.units import S
from protocol.models import Kind

LOOK_SIZE = (80, 60)


@dataclass(frozen=True, slots=True)
class Look:
    """What cover detection needs from a frame: luminance spread and level (0-255)."""

    stddev: float
    mean: float


def look(jpeg: bytes) -> Look:
    """Luminance statistics of a JPEG, decoded at reduced scale (JPEG draft mode) to stay cheap."""
    with Image.open(io.BytesIO(jpeg)) as image:
        image.draft("L", LOOK_SIZE)
        gray = image.convert("L")
        stat = ImageStat.Stat(gray)
        return Look(stddev=float(stat.stddev[0]), mean=float(stat.mean[0]))


@dataclass(frozen=True, slots=True)
class Reopen:
    """Action: stop and start the camera again (attempt counts from 1 within one fault)."""

    at_ns: int
    attempt: int


@dataclass(frozen=True, slots=True)
class HealthState:
    last_frame_ns: int
    faulted: bool = False
    reopen_attempts: int = 0
    next_reopen_ns: int | None = None
    covered: bool = False
    run: int = 0
    """Consecutive frames that point to the other cover state."""
    run_since_ns: int = 0


Step = tuple[HealthState, list[Observation], Reopen | None]


@dataclass(frozen=True, slots=True)
class Health:
    """Stall and cover logic for one camera."""

    name: str = "camera"
    stall_ns: int = 10 * S
    reopen_max_ns: int = 300 * S
    cover_below: float = 6.0
    uncover_above: float = 10.0
    cover_frames: int = 6
    uncover_frames: int = 4

    def __post_init__(self) -> None:
        if self.stall_ns <= 0 or self.reopen_max_ns < self.stall_ns:
            raise ValueError("stall_ns must be positive and reopen_max_ns at least stall_ns")
        if self.uncover_above < self.cover_below:
            raise ValueError("uncover_above must not be below cover_below")
        if self.cover_frames < 1 or self.uncover_frames < 1:
            raise ValueError("cover_frames and uncover_frames are at least 1")

    def initial(self, now_ns: int) -> HealthState:
        """The camera was (re)started at now_ns: the stall clock starts here."""
        return HealthState(last_frame_ns=now_ns)

    def frame(self, state: HealthState, seen: Look, at_ns: int) -> Step:
        """A frame captured at at_ns with luminance statistics `seen`."""
        out: list[Observation] = []
        if state.faulted:
            out.append(self._obs("recovered", at_ns))
        state = replace(
            state,
            last_frame_ns=max(state.last_frame_ns, at_ns),
            faulted=False,
            reopen_attempts=0,
            next_reopen_ns=None,
        )
        towards_other = (
            seen.stddev > self.uncover_above if state.covered else seen.stddev < self.cover_below
        )
        if not towards_other:
            return replace(state, run=0), out, None
        run_since = at_ns if state.run == 0 else state.run_since_ns
        run = state.run + 1
        needed = self.uncover_frames if state.covered else self.cover_frames
        if run < needed:
            return replace(state, run=run, run_since_ns=run_since), out, None
        covered = not state.covered
        out.append(self._obs("covered" if covered else "uncovered", run_since))
        return replace(state, covered=covered, run=0, run_since_ns=0), out, None

    def tick(self, state: HealthState, now_ns: int) -> Step:
        """Time passed without a frame: declare the fault, or ask for another reopen."""
        if not state.faulted:
            fault_at = state.last_frame_ns + self.stall_ns
            if now_ns < fault_at:
                return state, [], None
            state = replace(
                state,
                faulted=True,
                reopen_attempts=1,
                next_reopen_ns=now_ns + self._backoff(1),
                run=0,
            )
            return state, [self._obs("fault", fault_at)], Reopen(now_ns, 1)
        if state.next_reopen_ns is not None and now_ns >= state.next_reopen_ns:
            attempt = state.reopen_attempts + 1
            state = replace(
                state, reopen_attempts=attempt, next_reopen_ns=now_ns + self._backoff(attempt)
            )
            return state, [], Reopen(now_ns, attempt)
        return state, [], None

    def deadline(self, state: HealthState) -> int | None:
        """When tick() should next be called."""
        if state.faulted:
            return state.next_reopen_ns
        return state.last_frame_ns + self.stall_ns

    def _backoff(self, attempt: int) -> int:
        return int(min(self.stall_ns * 2 ** (attempt - 1), self.reopen_max_ns))

    def _obs(self, state: str, at_ns: int) -> Observation:
        return Observation(self.name, Kind.CAMERA, state, at_ns)
