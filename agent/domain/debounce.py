"""Debounce of a two-level contact: a new level counts once it has held for the debounce time."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Contact:
    """Committed level, and a candidate level waiting out the debounce time."""

    stable: bool
    pending: bool | None = None
    pending_since_ns: int = 0


def edge(state: Contact, active: bool, now_ns: int) -> Contact:
    """A raw level seen on the wire; every edge restarts the wait."""
    if active == state.stable:
        return replace(state, pending=None)
    return replace(state, pending=active, pending_since_ns=now_ns)


def settle(state: Contact, now_ns: int, debounce_ns: int) -> tuple[Contact, bool]:
    """Commit the candidate if it has held long enough; returns (state, changed)."""
    if state.pending is None or now_ns - state.pending_since_ns < debounce_ns:
        return state, False
    return Contact(stable=state.pending), True


def deadline(state: Contact, debounce_ns: int) -> int | None:
    """When settle() should next be called, if a candidate is waiting."""
    return None if state.pending is None else state.pending_since_ns + debounce_ns
