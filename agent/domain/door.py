"""Door contact: debounced open/closed, and a held-open report when it stays open too long."""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent.domain import debounce
from agent.domain.observation import Observation
from protocol.models import Kind


@dataclass(frozen=True, slots=True)
class DoorState:
    contact: debounce.Contact
    open_since_ns: int | None = None
    held_reported: bool = False


@dataclass(frozen=True, slots=True)
class Door:
    """Logic of one door; `active` means the contact says open."""

    name: str
    debounce_ns: int
    held_open_ns: int

    def initial(self, active: bool, now_ns: int) -> tuple[DoorState, list[Observation]]:
        state = DoorState(debounce.Contact(stable=active), now_ns if active else None)
        return state, [self._obs("open" if active else "closed", now_ns)]

    def edge(
        self, state: DoorState, active: bool, now_ns: int
    ) -> tuple[DoorState, list[Observation]]:
        state = replace(state, contact=debounce.edge(state.contact, active, now_ns))
        return self.tick(state, now_ns)

    def tick(self, state: DoorState, now_ns: int) -> tuple[DoorState, list[Observation]]:
        contact, changed = debounce.settle(state.contact, now_ns, self.debounce_ns)
        out: list[Observation] = []
        if changed:
            since = state.contact.pending_since_ns
            if contact.stable:
                state = DoorState(contact, open_since_ns=since)
                out.append(self._obs("open", since))
            else:
                state = DoorState(contact)
                out.append(self._obs("closed", since))
        else:
            state = replace(state, contact=contact)
        if (
            state.open_since_ns is not None
            and not state.held_reported
            and now_ns - state.open_since_ns >= self.held_open_ns
            and not _closing_before(state, state.open_since_ns + self.held_open_ns)
        ):
            out.append(self._obs("held-open", state.open_since_ns + self.held_open_ns))
            state = replace(state, held_reported=True)
        return state, out

    def deadline(self, state: DoorState) -> int | None:
        times = [debounce.deadline(state.contact, self.debounce_ns)]
        if state.open_since_ns is not None and not state.held_reported:
            held_at = state.open_since_ns + self.held_open_ns
            if not _closing_before(state, held_at):
                times.append(held_at)
        return min((t for t in times if t is not None), default=None)

    def _obs(self, state: str, at_ns: int) -> Observation:
        return Observation(self.name, Kind.DOOR, state, at_ns)


def _closing_before(state: DoorState, held_at_ns: int) -> bool:
    """A close that started before the held-open moment is being debounced: wait for it."""
    c = state.contact
    return c.pending is False and c.pending_since_ns < held_at_ns
