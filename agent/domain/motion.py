"""PIR motion: one `motion` per burst of activity, `still` after a quiet retrigger window."""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent.domain import debounce
from agent.domain.observation import Observation
from protocol.models import Kind


@dataclass(frozen=True, slots=True)
class MotionState:
    line: debounce.Contact
    in_motion: bool = False
    quiet_since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Motion:
    """Logic of one PIR; retriggers inside the window extend the burst instead of adding events."""

    name: str
    debounce_ns: int
    retrigger_ns: int

    def initial(self, active: bool, now_ns: int) -> tuple[MotionState, list[Observation]]:
        state = MotionState(debounce.Contact(stable=active), in_motion=active)
        return state, [self._obs("motion", now_ns)] if active else []

    def edge(
        self, state: MotionState, active: bool, now_ns: int
    ) -> tuple[MotionState, list[Observation]]:
        state = replace(state, line=debounce.edge(state.line, active, now_ns))
        return self.tick(state, now_ns)

    def tick(self, state: MotionState, now_ns: int) -> tuple[MotionState, list[Observation]]:
        line, changed = debounce.settle(state.line, now_ns, self.debounce_ns)
        out: list[Observation] = []
        if changed:
            since = state.line.pending_since_ns
            if line.stable:
                if not state.in_motion:
                    out.append(self._obs("motion", since))
                state = MotionState(line, in_motion=True, quiet_since_ns=None)
            else:
                state = MotionState(line, in_motion=state.in_motion, quiet_since_ns=since)
        else:
            state = replace(state, line=line)
        if (
            state.in_motion
            and state.quiet_since_ns is not None
            and now_ns - state.quiet_since_ns >= self.retrigger_ns
            and not _retrigger_before(state, state.quiet_since_ns + self.retrigger_ns)
        ):
            out.append(self._obs("still", state.quiet_since_ns + self.retrigger_ns))
            state = MotionState(state.line)
        return state, out

    def deadline(self, state: MotionState) -> int | None:
        times = [debounce.deadline(state.line, self.debounce_ns)]
        if state.in_motion and state.quiet_since_ns is not None:
            still_at = state.quiet_since_ns + self.retrigger_ns
            if not _retrigger_before(state, still_at):
                times.append(still_at)
        return min((t for t in times if t is not None), default=None)

    def _obs(self, state: str, at_ns: int) -> Observation:
        return Observation(self.name, Kind.MOTION, state, at_ns)


def _retrigger_before(state: MotionState, still_at_ns: int) -> bool:
    """New activity that started inside the window is being debounced: wait for it."""
    line = state.line
    return line.pending is True and line.pending_since_ns < still_at_ns
