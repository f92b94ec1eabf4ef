"""When the unit signs a checkpoint into its chain, and what it says of each input.

Silence proves nothing on its own: a dead or paused unit is silent too. A signed checkpoint
every few minutes ("alive, and this is how every input stood") turns a quiet night into one
an auditor can check: the chain holds a checkpoint at least every interval, or names the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.domain import debounce
from agent.domain.door import Door, DoorState
from agent.domain.motion import Motion, MotionState
from agent.domain.switch import Switch
from protocol.models import Kind


@dataclass(frozen=True, slots=True)
class ScheduleState:
    due_ns: int
    """Monotonic time of the next checkpoint."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A checkpoint at start, then one every `interval_ns`; a late loop never bursts."""

    interval_ns: int

    def __post_init__(self) -> None:
        if self.interval_ns <= 0:
            raise ValueError("a checkpoint interval must be positive")

    def initial(self, now_ns: int) -> ScheduleState:
        """Due at once: the chain of every boot opens with how its inputs stand."""
        return ScheduleState(now_ns)

    def tick(self, state: ScheduleState, now_ns: int) -> tuple[ScheduleState, bool]:
        """(next state, whether a checkpoint is due now).

        On time, the next one is one interval after the one due, so the period does not
        drift with the loop's wake-ups. Later than a whole interval (the unit was paused or
        stalled), the next one is an interval from now: missed checkpoints are not made up,
        because their absence is the truth an auditor must see.
        """
        if now_ns < state.due_ns:
            return state, False
        following = state.due_ns + self.interval_ns
        if following <= now_ns:
            following = now_ns + self.interval_ns
        return ScheduleState(following), True

    def deadline(self, state: ScheduleState) -> int:
        return state.due_ns


def reading(logic: object, state: object) -> str | None:
    """What a checkpoint says of one input now, from its debounced state machine.

    Door: open, held-open (open past its limit, reported) or closed.
    Motion: motion while a burst lasts, else still.
    Tamper switch: tampered or normal.
    Patrol button and anything else: None (a press is an event, not a lasting state).
    """
    if isinstance(logic, Door) and isinstance(state, DoorState):
        if not state.contact.stable:
            return "closed"
        return "held-open" if state.held_reported else "open"
    if isinstance(logic, Motion) and isinstance(state, MotionState):
        return "motion" if state.in_motion else "still"
    switch = logic if isinstance(logic, Switch) else None
    if switch is not None and switch.kind is Kind.TAMPER and isinstance(state, debounce.Contact):
        return switch.on_active if state.stable else switch.on_inactive
    return None
