"""What the pure sensor logic reports: a sensor entered a state at a monotonic instant."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.models import Kind


@dataclass(frozen=True, slots=True)
class Observation:
    """A state change worth an event; `at_ns` is the monotonic time the change happened."""

    sensor: str
    kind: Kind
    state: str
    at_ns: int
