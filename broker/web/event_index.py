"""The recent events and pictures the guard-post page knows, and which belongs to which.

A camera event names the event that caused it (a door opening) and signs the pictures around
it; a picture may arrive before its event. Bounded: the oldest are forgotten first (the
evidence viewer then reads storage). Not locked: broker.web.state.LiveState calls it under
its own lock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from broker.web.views import PictureRef
from protocol.models import Event


@dataclass(frozen=True, slots=True)
class EventRecord:
    event: Event
    received: int


class EventIndex:
    """Events by id, the camera events each caused, the pictures of each, and each picture's
    sites (for access checks)."""

    def __init__(self, *, max_events: int, max_pictures: int) -> None:
        self.max_events = max_events
        self.max_pictures = max_pictures
        self._events: OrderedDict[str, EventRecord] = OrderedDict()
        self._pictures: OrderedDict[str, list[PictureRef]] = OrderedDict()
        self._caused: OrderedDict[str, list[str]] = OrderedDict()  # door event -> camera events
        self._picture_sites: OrderedDict[str, set[str]] = OrderedDict()

    def add_event(self, event: Event, now: int) -> None:
        self._events[event.id] = EventRecord(event, now)
        self._events.move_to_end(event.id)
        while len(self._events) > self.max_events:
            self._events.popitem(last=False)
        if event.cause is not None:  # a camera event holding the pictures of its cause
            caused = self._caused.setdefault(event.cause, [])
            if event.id not in caused:
                caused.append(event.id)
            while len(self._caused) > self.max_events:
                self._caused.popitem(last=False)

    def place_waiting(self, event: Event) -> tuple[bool, list[PictureRef]]:
        """Pictures that came before their event get its site and unit: whether it has any
        pictures at all, and those placed now."""
        pending = self._pictures.get(event.id, [])
        placed: list[PictureRef] = []
        for i, ref in enumerate(pending):
            if ref.site is None:
                pending[i] = ref = PictureRef(
                    ref.sha256, ref.event_id, event.site, event.device, ref.role, ref.at
                )
                self._index_picture(ref)
                placed.append(ref)
        return bool(pending), placed

    def add_picture(
        self,
        event_id: str,
        sha256: str,
        site: str | None,
        device: str | None,
        role: str | None,
        now: int,
    ) -> PictureRef | None:
        """The picture as recorded (its site and unit from its event when known); None when it
        was already."""
        record = self._events.get(event_id)
        if record is not None:
            site, device = site or record.event.site, device or record.event.device
        refs = self._pictures.setdefault(event_id, [])
        if any(r.sha256 == sha256 for r in refs):
            return None
        ref = PictureRef(sha256, event_id, site, device, role, now)
        refs.append(ref)
        self._pictures.move_to_end(event_id)
        while len(self._pictures) > self.max_events:
            self._pictures.popitem(last=False)
        if site is not None and device is not None:
            self._index_picture(ref)
        return ref

    def event(self, event_id: str) -> EventRecord | None:
        return self._events.get(event_id)

    def cause_of(self, event_id: str) -> str | None:
        record = self._events.get(event_id)
        return record.event.cause if record is not None else None

    def caused_by(self, event_id: str) -> list[Event]:
        ids = self._caused.get(event_id, [])
        return [r.event for i in ids if (r := self._events.get(i)) is not None]

    def pictures_of(self, event_id: str) -> list[PictureRef]:
        return list(self._pictures.get(event_id, []))

    def picture_sites(self, sha256: str) -> set[str]:
        return set(self._picture_sites.get(sha256, set()))

    def ordered_pictures(self, event_id: str | None) -> list[PictureRef]:
        """The event's own pictures and those of the camera events it caused, each set in the
        order the unit signed it (before, still, after)."""
        if event_id is None:
            return []
        out: list[PictureRef] = []
        for eid in [event_id, *self._caused.get(event_id, [])]:
            refs = list(self._pictures.get(eid, []))
            record = self._events.get(eid)
            announced = list(record.event.snapshot_sha256 or ()) if record else []
            rank = {sha: i for i, sha in enumerate(announced)}
            out += sorted(refs, key=lambda r: (rank.get(r.sha256, len(rank)), r.at))
        return out

    def _index_picture(self, ref: PictureRef) -> None:
        if ref.site is None:
            return
        self._picture_sites.setdefault(ref.sha256, set()).add(ref.site)
        self._picture_sites.move_to_end(ref.sha256)
        while len(self._picture_sites) > self.max_pictures:
            self._picture_sites.popitem(last=False)
