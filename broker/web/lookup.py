"""Stored events from InfluxDB, for evidence links to events the page has not seen."""

from __future__ import annotations

import logging

from broker.influx_reader import InfluxReader, QueryFailed, quote_string
from protocol.models import Event, WireError, parse

log = logging.getLogger("jaga.web.lookup")

CAMERA_WINDOW_NS = 10 * 60 * 10**9
"""How long after an event the camera event holding its pictures may be stamped."""


class InfluxEvents:
    """Events exactly as the units signed them (the `raw` field of the `event` measurement)."""

    def __init__(self, ql: InfluxReader) -> None:
        self.ql = ql

    def event(self, event_id: str) -> Event | None:
        found = self._events(f'SELECT "raw" FROM "event" WHERE "id" = {quote_string(event_id)}')
        return found[0] if found else None

    def caused(self, event: Event) -> list[Event]:
        """The camera events that name this event as their cause (they sign its pictures)."""
        query = (
            f'SELECT "raw" FROM "event" WHERE "device" = {quote_string(event.device)} '
            f"AND \"kind\" = 'camera' AND time >= {event.ts} "
            f"AND time <= {event.ts + CAMERA_WINDOW_NS}"
        )
        return [e for e in self._events(query) if e.cause == event.id]

    def _events(self, query: str) -> list[Event]:
        try:
            rows = self.ql.rows(query)
        except QueryFailed as exc:
            log.warning("evidence viewer: cannot read events from InfluxDB: %s", exc)
            return []
        out: list[Event] = []
        for row in rows:
            raw = row.get("raw")
            if isinstance(raw, str):
                try:
                    out.append(parse(Event, raw.encode()))
                except WireError as exc:
                    log.warning("a stored event does not parse: %s", exc)
        return out
