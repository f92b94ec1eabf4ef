"""Debounced two-state inputs that need no timing of their own: tamper switch, patrol button."""

from __future__ import annotations

from dataclasses import dataclass

from agent.domain import debounce
from agent.domain.observation import Observation
from protocol.models import Kind


@dataclass(frozen=True, slots=True)
class Switch:
    """A debounced contact reporting `on_active` / `on_inactive` (None: report nothing)."""

    name: str
    kind: Kind
    debounce_ns: int
    on_active: str | None
    on_inactive: str | None
    report_initial: bool

    def initial(self, active: bool, now_ns: int) -> tuple[debounce.Contact, list[Observation]]:
        state = debounce.Contact(stable=active)
        label = self.on_active if active else self.on_inactive
        if not self.report_initial or label is None:
            return state, []
        return state, [Observation(self.name, self.kind, label, now_ns)]

    def edge(
        self, state: debounce.Contact, active: bool, now_ns: int
    ) -> tuple[debounce.Contact, list[Observation]]:
        return self.tick(debounce.edge(state, active, now_ns), now_ns)

    def tick(
        self, state: debounce.Contact, now_ns: int
    ) -> tuple[debounce.Contact, list[Observation]]:
        since = state.pending_since_ns
        new, changed = debounce.settle(state, now_ns, self.debounce_ns)
        if not changed:
            return new, []
        label = self.on_active if new.stable else self.on_inactive
        return new, [] if label is None else [Observation(self.name, self.kind, label, since)]

    def deadline(self, state: debounce.Contact) -> int | None:
        return debounce.deadline(state, self.debounce_ns)


def tamper(name: str, debounce_ns: int) -> Switch:
    """Enclosure switch: reports its state at start and every change."""
    return Switch(name, Kind.TAMPER, debounce_ns, "tampered", "normal", report_initial=True)


def patrol_button(name: str, debounce_ns: int) -> Switch:
    """Check-in button: one `checkin` per press, nothing on release."""
    return Switch(name, Kind.PATROL, debounce_ns, "checkin", None, report_initial=False)
