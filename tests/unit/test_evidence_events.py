"""One reader of "an event and the pictures it caused": the guard-post page's evidence viewer
and `evidence export` ask broker.evidence_events the same questions and get the same camera
events, within the one window CAMERA_WINDOW_NS."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from broker.evidence_events import CAMERA_WINDOW_NS, EvidenceEvents
from broker.export import ExportError, find_evidence_events
from broker.influx_reader import QueryFailed
from broker.web import evidence_view
from broker.web.state import LiveState
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, sign
from provisioning import certs

KEY = certs.new_key()
T0 = time.time_ns()
SHA = "ab" * 32


def stored(
    id: str,
    kind: Kind,
    ts: int,
    *,
    device: str = "gudang-01",
    cause: str | None = None,
    pictures: tuple[str, ...] | None = None,
) -> Event:
    body = EventBody(
        id=id, site="bangka-barat", device=device, sensor=kind.value, kind=kind,
        state="snapshot" if kind is Kind.CAMERA else "open", seq=1, boot_id="boot-1", ts=ts,
        mono_ns=1, clock_synced=True, prev=GENESIS, cause=cause, snapshot_sha256=pictures,
    )  # fmt: skip
    return sign(body, KEY)


class StoredEvents:
    """InfluxDB's `event` measurement for the two queries the reader makes, evaluated here
    (id; device, kind and a time range); any other query fails the test."""

    BY_ID = re.compile(r"""^SELECT "raw" FROM "event" WHERE "id" = '([^']*)'$""")
    CAUSED = re.compile(
        r"""^SELECT "raw" FROM "event" WHERE "device" = '([^']*)' AND "kind" = '(\w+)' """
        r"""AND time >= (\d+)(?: AND time <= (\d+))?$"""
    )

    def __init__(self, events: list[Event]) -> None:
        self.events = sorted(events, key=lambda e: e.ts)
        self.queries: list[str] = []

    def rows(self, query: str) -> list[dict[str, Any]]:
        self.queries.append(query)
        if m := self.BY_ID.match(query):
            found = [e for e in self.events if e.id == m[1]]
        elif m := self.CAUSED.match(query):
            device, kind, low, high = m[1], m[2], int(m[3]), m[4]
            found = [
                e
                for e in self.events
                if e.device == device
                and e.kind.value == kind
                and e.ts >= low
                and (high is None or e.ts <= int(high))
            ]
        else:
            raise AssertionError(f"a query the fake does not know: {query}")
        return [{"time": e.ts, "raw": e.model_dump_json(exclude_none=True)} for e in found]


DOOR = stored("door-1", Kind.DOOR, T0)
EDGE = T0 + CAMERA_WINDOW_NS
HISTORY = [
    DOOR,
    stored("snap-at-once", Kind.CAMERA, T0 + 1, cause="door-1", pictures=(SHA,)),
    stored("snap-at-the-edge", Kind.CAMERA, EDGE, cause="door-1", pictures=(SHA,)),
    stored("snap-too-late", Kind.CAMERA, EDGE + 1, cause="door-1", pictures=(SHA,)),
    stored("snap-of-another-door", Kind.CAMERA, T0 + 2, cause="door-2", pictures=(SHA,)),
    stored("snap-of-another-unit", Kind.CAMERA, T0 + 3, device="gudang-02", cause="door-1",
           pictures=(SHA,)),
]  # fmt: skip


def test_the_viewer_and_the_export_find_the_same_camera_events_within_the_one_window() -> None:
    influx = StoredEvents(HISTORY)
    reader = EvidenceEvents(influx)  # type: ignore[arg-type]

    page = evidence_view.build("door-1", LiveState(), None, reader)
    exported = find_evidence_events(reader, "door-1")

    assert page is not None
    assert [e.id for e in page.camera_events] == ["snap-at-once", "snap-at-the-edge"]
    assert [e.id for e in exported] == [e.id for e in page.camera_events]


def test_an_event_carrying_its_own_pictures_is_its_own_evidence() -> None:
    snap = stored("snap-alone", Kind.CAMERA, T0, pictures=(SHA,))
    reader = EvidenceEvents(StoredEvents([snap]))  # type: ignore[arg-type]

    assert find_evidence_events(reader, "snap-alone") == [snap]
    assert reader.signing(snap) == [snap]


def test_the_export_says_when_the_event_is_unknown_or_caused_no_pictures() -> None:
    reader = EvidenceEvents(StoredEvents([DOOR]))  # type: ignore[arg-type]

    with pytest.raises(ExportError, match="no event with id door-9"):
        find_evidence_events(reader, "door-9")
    with pytest.raises(ExportError, match="has no pictures"):
        find_evidence_events(reader, "door-1")


def test_the_viewer_shows_what_it_has_when_influxdb_does_not_answer() -> None:
    class Down:
        def rows(self, query: str) -> list[dict[str, Any]]:
            raise QueryFailed("cannot query InfluxDB at http://127.0.0.1:8086: refused")

    reader = EvidenceEvents(Down())  # type: ignore[arg-type]

    assert evidence_view.build("door-1", LiveState(), None, reader) is None
    with pytest.raises(QueryFailed):
        find_evidence_events(reader, "door-1")
