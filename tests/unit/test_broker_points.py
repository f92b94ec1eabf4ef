"""The event line the collector writes is byte for byte what influxdb-client makes of the
event's Point, whatever the values: tags and string fields are escaped differently (a tag
escapes , = space and control characters and must not end in a backslash; a string field
escapes only backslash and double quote), and both are checked here over hostile text."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from broker import points
from broker.influx import to_lines
from protocol.models import Event, Kind
from protocol.signing import GENESIS

HOSTILE = [
    "",
    " ",
    "\\",
    "a\\",
    "\\\\",
    '"',
    '\\"',
    "a,b",
    "a=b",
    "a b",
    "a\nb",
    "a\r\nb",
    "a\tb",
    "\x00",
    "é",
    "ГУДАНГ",
    "😀",
    "\u200b",
    "#comment",
    'x", y="z',
    "\\ ",
    ',=\\ "\n',
]
text = st.sampled_from(HOSTILE) | st.text(max_size=40)
NOW = 1_795_000_000_000_000_000


def reference(event: Event, digest: str, raw: bytes) -> str:
    return points.event_point(event, digest, raw).to_line_protocol()


def hostile_event(**values: Any) -> Event:
    """An Event with any values at all (no validation): what event_line must still match."""
    data: dict[str, Any] = {
        "v": 1,
        "id": "ev-1",
        "site": "gudang-3",
        "device": "pintu-1",
        "sensor": "pintu-utama",
        "kind": Kind.DOOR,
        "state": "open",
        "seq": 1,
        "boot_id": "boot-1",
        "ts": NOW,
        "mono_ns": 12,
        "clock_synced": True,
        "snapshot_sha256": None,
        "cause": None,
        "prev": GENESIS,
        "sig": "A" * 86,
    }
    late = {k: values.pop(k) for k in ("kind", "state") if k in values}
    data.update(values)
    event = Event.model_construct(**data)  # model_post_init still checks these: set them after
    event.__dict__.update(late)
    return event


def test_a_plain_event_line_matches_the_point() -> None:
    event = hostile_event()
    raw = event.to_json()
    line = points.event_line(event, "ab" * 32, raw)
    assert line == reference(event, "ab" * 32, raw)
    assert line.startswith("event,device=pintu-1,kind=door,sensor=pintu-utama,site=gudang-3 ")
    assert line.endswith(f" {NOW}")


def test_an_event_with_snapshots_and_an_inactive_state_matches_the_point() -> None:
    event = hostile_event(
        kind=Kind.CAMERA, state="snapshot", snapshot_sha256=("a" * 64, "b" * 64), clock_synced=False
    )
    raw = event.to_json()
    assert points.event_line(event, "cd" * 32, raw) == reference(event, "cd" * 32, raw)
    assert 'snapshots="' + "a" * 64 + "," + "b" * 64 + '"' in points.event_line(event, "", raw)


@settings(max_examples=400, deadline=None)
@given(
    site=text,
    device=text,
    sensor=text,
    kind=st.sampled_from(list(Kind)),
    state=text | st.sampled_from(sorted(points.ACTIVE_STATES)),
    ident=text,
    boot_id=text,
    prev=text,
    digest=text,
    raw=text,
    seq=st.integers(min_value=-(2**63), max_value=2**64),
    mono_ns=st.integers(min_value=-(2**63), max_value=2**64),
    ts=st.integers(min_value=0, max_value=2**63),
    clock_synced=st.booleans(),
    snapshots=st.none() | st.lists(text, max_size=3).map(tuple),
)
def test_any_event_line_matches_the_point(
    site: str,
    device: str,
    sensor: str,
    kind: Kind,
    state: str,
    ident: str,
    boot_id: str,
    prev: str,
    digest: str,
    raw: str,
    seq: int,
    mono_ns: int,
    ts: int,
    clock_synced: bool,
    snapshots: tuple[str, ...] | None,
) -> None:
    event = hostile_event(
        site=site,
        device=device,
        sensor=sensor,
        kind=kind,
        state=state,
        id=ident,
        boot_id=boot_id,
        prev=prev,
        seq=seq,
        mono_ns=mono_ns,
        ts=ts,
        clock_synced=clock_synced,
        snapshot_sha256=snapshots,
    )
    payload = raw.encode()
    assert points.event_line(event, digest, payload) == reference(event, digest, payload)


@settings(max_examples=400, deadline=None)
@given(value=text)
def test_a_tag_is_escaped_as_influxdb_client_escapes_tags(value: str) -> None:
    point = Point("m").tag("t", value).field("f", 1).time(1, WritePrecision.NS)
    assert f"m{points._tag('t', value)} f=1i 1" == point.to_line_protocol()


@settings(max_examples=400, deadline=None)
@given(value=text)
def test_a_string_field_is_escaped_as_influxdb_client_escapes_strings(value: str) -> None:
    point = Point("m").field("f", value).time(1, WritePrecision.NS)
    assert f'm f="{points._text(value)}" 1' == point.to_line_protocol()


def test_tags_and_string_fields_escape_differently() -> None:
    value = 'a b,c=d"e\\'
    assert points._tag("t", value) == ',t=a\\ b\\,c\\=d"e\\ '
    assert points._text(value) == 'a b,c=d\\"e\\\\'


def test_the_raw_event_survives_in_the_line() -> None:
    """`raw` is the payload as signed: quotes and backslashes inside it round-trip."""
    event = hostile_event(id='q"uo\\te')
    raw = json.dumps({"id": 'q"uo\\te', "note": "a\nb"}).encode()
    line = points.event_line(event, "ef" * 32, raw)
    assert line == reference(event, "ef" * 32, raw)
    start = line.index('raw="') + len('raw="')
    end = line.index('",seq=')
    assert line[start:end].replace('\\"', '"').replace("\\\\", "\\") == raw.decode()


def test_to_lines_mixes_points_and_lines_as_influxdb_client_would() -> None:
    event = hostile_event()
    raw = event.to_json()
    status = Point("status").tag("site", "s").field("online", 1).time(5, WritePrecision.NS)
    body = to_lines([points.event_line(event, "00" * 32, raw), status])
    assert body == "\n".join([reference(event, "00" * 32, raw), status.to_line_protocol()]).encode()
