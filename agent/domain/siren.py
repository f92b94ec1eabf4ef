"""The local siren: sounds for a forced door or an intrusion while the site is armed, even
with the network down; waits out the entry delay of an entry door; stops on disarm. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class SirenState:
    sounding_until_ns: int | None = None
    due_at_ns: int | None = None
    """An entry door opened: the siren sounds at this time unless the site is disarmed."""


@dataclass(frozen=True, slots=True)
class Siren:
    duration_ns: int

    def intrusion(self, state: SirenState, now_ns: int, delay_ns: int = 0) -> SirenState:
        """A door opened or motion while armed; with a delay, only if not disarmed by then."""
        if delay_ns > 0:
            due = now_ns + delay_ns
            if state.due_at_ns is None or due < state.due_at_ns:
                return replace(state, due_at_ns=due)
            return state
        return SirenState(sounding_until_ns=now_ns + self.duration_ns)

    def disarm(self, _state: SirenState) -> SirenState:
        return SirenState()

    def tick(self, state: SirenState, now_ns: int) -> SirenState:
        if state.due_at_ns is not None and now_ns >= state.due_at_ns:
            return SirenState(sounding_until_ns=state.due_at_ns + self.duration_ns)
        if state.sounding_until_ns is not None and now_ns >= state.sounding_until_ns:
            return replace(state, sounding_until_ns=None)
        return state

    @staticmethod
    def sounding(state: SirenState) -> bool:
        return state.sounding_until_ns is not None

    @staticmethod
    def deadline(state: SirenState) -> int | None:
        times = [t for t in (state.due_at_ns, state.sounding_until_ns) if t is not None]
        return min(times, default=None)
