"""Evidence sets: on a trigger, the frames before it, a full-resolution still, and the frames
after it, each with its SHA-256, ready to be stored, signed into an event and published.

A small state machine in the style of agent.domain: (state, input, now) -> (state, outputs), no
clock reads, no I/O. The caller feeds it every frame it reads and the result of the still it
takes on trigger; `tick(now)` hands back the sets whose after-window has passed. Order of files
in a set, and so of the hashes in the signed event: before frames (oldest first), the still,
after frames (oldest first). The set is capped at 64 files (the event's limit): the oldest
before-frames go first, then the last after-frames.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from agent.camera.base import Frame
from agent.domain.observation import Observation
from kernel.units import S
from protocol.models import Kind

MAX_FILES = 64
"""EventBody.snapshot_sha256 holds at most 64 hashes."""


class Role(StrEnum):
    """Where a picture sits in an evidence set."""

    BEFORE = "before"
    STILL = "still"
    AFTER = "after"


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    """One picture of a set: its bytes, hash, role and monotonic capture time."""

    role: Role
    jpeg: bytes
    sha256: str
    mono_ns: int

    @classmethod
    def of(cls, role: Role, jpeg: bytes, mono_ns: int) -> EvidenceFile:
        return cls(role, jpeg, hashlib.sha256(jpeg).hexdigest(), mono_ns)

    @classmethod
    def of_frame(cls, role: Role, frame: Frame) -> EvidenceFile:
        return cls.of(role, frame.jpeg, frame.mono_ns)


@dataclass(frozen=True, slots=True)
class EvidenceSet:
    """A finished set for one trigger; `key` is the caller's name for the trigger."""

    key: str
    trigger_ns: int
    files: tuple[EvidenceFile, ...]
    still_taken: bool

    @property
    def hashes(self) -> tuple[str, ...]:
        """What goes into Event.snapshot_sha256, in set order."""
        return tuple(f.sha256 for f in self.files)

    @property
    def nbytes(self) -> int:
        return sum(len(f.jpeg) for f in self.files)

    def observation(self, sensor: str = "camera") -> Observation:
        """The `camera/snapshot` event this set is signed into, timed at the trigger."""
        return Observation(sensor, Kind.CAMERA, "snapshot", self.trigger_ns)


@dataclass(frozen=True, slots=True)
class Capture:
    """A trigger whose set is still being gathered."""

    key: str
    trigger_ns: int
    before: tuple[EvidenceFile, ...] = ()
    still: EvidenceFile | None = None
    still_done: bool = False
    after: tuple[EvidenceFile, ...] = ()


@dataclass(frozen=True, slots=True)
class EvidenceState:
    pending: tuple[Capture, ...] = ()


@dataclass(frozen=True, slots=True)
class Evidence:
    """Evidence-set logic; `before_ns`/`after_ns` are the windows around a trigger."""

    before_ns: int = 10 * S
    after_ns: int = 3 * S
    still_grace_ns: int = 10 * S
    """How long past the after-window to wait for a still before closing the set without it."""
    max_files: int = MAX_FILES

    def __post_init__(self) -> None:
        if not 1 <= self.max_files <= MAX_FILES:
            raise ValueError(f"max_files must be 1-{MAX_FILES}")
        if min(self.before_ns, self.after_ns, self.still_grace_ns) < 0:
            raise ValueError("windows cannot be negative")

    def trigger(
        self, state: EvidenceState, key: str, now_ns: int, buffered: Iterable[Frame]
    ) -> EvidenceState:
        """Open a set at now_ns with the buffered frames of the before-window; a repeated key
        is the same trigger and changes nothing."""
        if any(c.key == key for c in state.pending):
            return state
        first = now_ns - self.before_ns
        before = tuple(
            EvidenceFile.of_frame(Role.BEFORE, f)
            for f in sorted(buffered, key=lambda f: f.mono_ns)
            if first <= f.mono_ns <= now_ns
        )
        return replace(state, pending=(*state.pending, Capture(key, now_ns, before)))

    def still(
        self, state: EvidenceState, key: str, jpeg: bytes | None, at_ns: int
    ) -> EvidenceState:
        """The still taken for `key` (None: it could not be taken; close the set without it)."""
        pending = []
        for c in state.pending:
            if c.key == key and not c.still_done:
                still = None if jpeg is None else EvidenceFile.of(Role.STILL, jpeg, at_ns)
                c = replace(c, still=still, still_done=True)
            pending.append(c)
        return replace(state, pending=tuple(pending))

    def frame(self, state: EvidenceState, frame: Frame) -> EvidenceState:
        """Offer a new frame to every open set whose window it falls in."""
        if not state.pending:
            return state
        pending = []
        for c in state.pending:
            if c.trigger_ns < frame.mono_ns <= c.trigger_ns + self.after_ns:
                c = replace(c, after=(*c.after, EvidenceFile.of_frame(Role.AFTER, frame)))
            elif c.trigger_ns - self.before_ns <= frame.mono_ns <= c.trigger_ns and all(
                b.mono_ns != frame.mono_ns for b in c.before
            ):
                # Captured before the trigger but read after it (encoding latency).
                late = EvidenceFile.of_frame(Role.BEFORE, frame)
                c = replace(c, before=tuple(sorted((*c.before, late), key=_capture_time)))
            pending.append(c)
        return replace(state, pending=tuple(pending))

    def tick(self, state: EvidenceState, now_ns: int) -> tuple[EvidenceState, list[EvidenceSet]]:
        """Close every set whose after-window has passed and whose still is in (or overdue)."""
        done: list[EvidenceSet] = []
        keep: list[Capture] = []
        for c in state.pending:
            if now_ns >= self._closes_at(c):
                done.append(self._finish(c))
            else:
                keep.append(c)
        if not done:
            return state, []
        return replace(state, pending=tuple(keep)), done

    def deadline(self, state: EvidenceState) -> int | None:
        """When tick() should next be called."""
        return min((self._closes_at(c) for c in state.pending), default=None)

    def _closes_at(self, c: Capture) -> int:
        end = c.trigger_ns + self.after_ns
        return end if c.still_done else end + self.still_grace_ns

    def _finish(self, c: Capture) -> EvidenceSet:
        before, after = list(c.before), list(c.after)
        still = [c.still] if c.still is not None else []
        while len(before) + len(still) + len(after) > self.max_files:
            if before:
                before.pop(0)
            else:
                after.pop()
        files = tuple(before + still + after)
        return EvidenceSet(c.key, c.trigger_ns, files, still_taken=c.still is not None)


def _capture_time(f: EvidenceFile) -> int:
    return f.mono_ns


def roles_by_size(areas: list[int | None]) -> list[Role]:
    """Each picture's role in a set, guessed from pixel areas in set order (for pictures stored
    before roles were recorded): the one largest picture is the full-resolution still, those
    before it are before-frames and those after it after-frames; without a single largest
    (no still was taken), all are taken for before-frames."""
    known = [a for a in areas if a is not None]
    top = max(known, default=None)
    if top is None or known.count(top) != 1 or len(known) < 2:
        return [Role.BEFORE] * len(areas)
    still = areas.index(top)
    return [
        Role.BEFORE if i < still else Role.STILL if i == still else Role.AFTER
        for i in range(len(areas))
    ]
