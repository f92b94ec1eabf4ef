"""Typed references to a unit and to one of its events, used as keys on the collector side.

Event ids are chosen by units, so an id alone names nothing: two units (of one site or of
two) may use the same one, by chance or on purpose. Everything the collector keeps about an
event is keyed by the unit that signed it as well.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class UnitRef:
    site: str
    device: str

    def __str__(self) -> str:
        return f"{self.site}/{self.device}"


@dataclass(frozen=True, slots=True, order=True)
class EventRef:
    site: str
    device: str
    event_id: str

    @property
    def unit(self) -> UnitRef:
        return UnitRef(self.site, self.device)

    def __str__(self) -> str:
        return f"{self.site}/{self.device}/{self.event_id}"
