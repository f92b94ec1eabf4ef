"""One reader of "an event and the pictures it caused": the guard-post page's evidence viewer
and `evidence export` ask broker.evidence_events the same questions and get the same camera
events, within the one window CAMERA_WINDOW_NS. The events are in a real InfluxDB (devstack's),
written as the collector writes them; the window's edges are InfluxQL's, not ours."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from broker.evidence_events import CAMERA_WINDOW_NS, EvidenceEvents
from broker.export import ExportError, find_evidence_events
from broker.influx_reader import InfluxReader, QueryFailed
from broker.points import event_line
from broker.web import evidence_view
from broker.web.state import LiveState
from devstack.influx import InfluxDB
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, event_hash, sign
from provisioning import certs

pytestmark = pytest.mark.integration

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


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    db = InfluxDB(tmp_path_factory.mktemp("influx")).start()
    try:
        yield db
    finally:
        db.stop()


def reader_of(influx: InfluxDB, events: list[Event]) -> EvidenceEvents:
    """The events written as the collector writes them, into a database of their own."""
    database = f"events{len(events)}{abs(hash(tuple(e.id for e in events))) % 10**6}"
    influx.create_database(database)
    lines = [event_line(e, event_hash(e), e.to_json()) for e in events]
    influx.write_lines("\n".join(lines), db=database)
    return EvidenceEvents(InfluxReader(influx.url, database))


def test_the_viewer_and_the_export_find_the_same_camera_events_within_the_one_window(
    influx: InfluxDB,
) -> None:
    reader = reader_of(influx, HISTORY)

    page = evidence_view.build("door-1", LiveState(), None, reader)
    exported = find_evidence_events(reader, "door-1")

    assert page is not None
    assert [e.id for e in page.camera_events] == ["snap-at-once", "snap-at-the-edge"]
    assert [e.id for e in exported] == [e.id for e in page.camera_events]


def test_an_event_carrying_its_own_pictures_is_its_own_evidence(influx: InfluxDB) -> None:
    snap = stored("snap-alone", Kind.CAMERA, T0, pictures=(SHA,))
    reader = reader_of(influx, [snap])

    assert find_evidence_events(reader, "snap-alone") == [snap]
    assert reader.signing(snap) == [snap]


def test_the_export_says_when_the_event_is_unknown_or_caused_no_pictures(
    influx: InfluxDB,
) -> None:
    reader = reader_of(influx, [DOOR])

    with pytest.raises(ExportError, match="no event with id door-9"):
        find_evidence_events(reader, "door-9")
    with pytest.raises(ExportError, match="has no pictures"):
        find_evidence_events(reader, "door-1")


def test_the_viewer_shows_what_it_has_when_influxdb_does_not_answer() -> None:
    reader = EvidenceEvents(InfluxReader("http://127.0.0.1:9", "jaga"))  # nothing listens

    assert evidence_view.build("door-1", LiveState(), None, reader) is None
    with pytest.raises(QueryFailed):
        find_evidence_events(reader, "door-1")
