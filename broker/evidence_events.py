"""The one reader of stored evidence events: an event by its id, and the camera events that hold
the pictures it caused. The guard-post page's evidence viewer and `evidence export` both read
through it, so they cannot disagree on which pictures an event has.

A door opening is one event; its pictures come in the camera event it caused (`cause` = the
door event's id), which signs their SHA-256. That camera event is stored by the unit once the
pictures after the trigger are taken, stamped one ns after the unit's latest event: within
seconds of its cause, and never before it (a unit's timestamps only grow).
"""

from __future__ import annotations

import logging

from broker.influx_reader import InfluxReader, quote_string
from kernel.units import MINUTE
from protocol.models import Event, WireError, parse

log = logging.getLogger("jaga.evidence_events")

CAMERA_WINDOW_NS = 10 * MINUTE
"""How long after an event the camera events holding its pictures may be stamped: seconds in
practice, ten minutes to spare; it bounds the query to a short stretch of the unit's history."""


class EvidenceEvents:
    """Events exactly as the units signed them (the `raw` field of the `event` measurement).

    Every method may raise broker.influx_reader.QueryFailed; a stored row that does not parse
    is left out with a warning (it proves nothing)."""

    def __init__(self, reader: InfluxReader) -> None:
        self.reader = reader

    def event(self, event_id: str) -> Event | None:
        """The stored event with this id (the earliest, should two units have used it)."""
        found = self._events(f'SELECT "raw" FROM "event" WHERE "id" = {quote_string(event_id)}')
        return found[0] if found else None

    def caused(self, event: Event) -> list[Event]:
        """The camera events of event's unit that name it as their cause (they sign its
        pictures), stamped within CAMERA_WINDOW_NS after it."""
        query = (
            f'SELECT "raw" FROM "event" WHERE "device" = {quote_string(event.device)} '
            f"AND \"kind\" = 'camera' AND time >= {event.ts} "
            f"AND time <= {event.ts + CAMERA_WINDOW_NS}"
        )
        return [e for e in self._events(query) if e.cause == event.id]

    def signing(self, event: Event) -> list[Event]:
        """The events that sign event's pictures: itself if it carries them, else the camera
        events it caused that do."""
        if event.snapshot_sha256:
            return [event]
        return [e for e in self.caused(event) if e.snapshot_sha256]

    def _events(self, query: str) -> list[Event]:
        out: list[Event] = []
        for row in self.reader.rows(query):
            raw = row.get("raw")
            if isinstance(raw, str):
                try:
                    out.append(parse(Event, raw.encode()))
                except WireError as exc:
                    log.warning("a stored event does not parse: %s", exc)
        return out
