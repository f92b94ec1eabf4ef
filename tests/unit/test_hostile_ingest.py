"""The collector's handling of hostile messages: `broker.ingest.Ingest.handle` with a real
ChainBook (SQLite in a temp folder) and a small key store of its own, fed arbitrary topics and
payloads. Every message ends as an Outcome: anything not a genuine event, heartbeat or status
is a Rejected with a reason, whose dead letter and InfluxDB points can be made; nothing
raises. The picture reassembler (snapshot chunks) gets the same treatment. The number of
cases run is printed at the end."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import points
from broker.chain import ChainBook
from broker.ingest import MAX_PAYLOAD, Accepted, Duplicate, Ingest, Reason, Rejected
from protocol import models, snapshot, topics
from protocol.models import DeadLetter, EventBody, Kind
from protocol.signing import GENESIS, PublicKey, canonical_bytes, event_hash, sign
from protocol.topics import DeviceTopics
from tests.support import say

RUNS: Counter[str] = Counter()
SITE, DEVICE = "bangka-barat", "gudang-01"
UNIT = DeviceTopics(SITE, DEVICE)
KEY = ed25519.Ed25519PrivateKey.generate()
NOW = 1_795_000_000_000_000_000
COMMITTED = 3
"""Seqs 1..3 of the unit are in the chain book before the hostile messages arrive."""


class Keys:
    """The collector's view of the registry: one unit with one key."""

    def keys(self, site: str, device: str) -> list[PublicKey]:
        return [KEY.public_key()] if (site, device) == (SITE, DEVICE) else []


def body(seq: int, prev: str, **changes: Any) -> EventBody:
    data: dict[str, Any] = {
        "id": f"ev-{seq}",
        "site": SITE,
        "device": DEVICE,
        "sensor": "pintu-utama",
        "kind": Kind.DOOR,
        "state": "open" if seq % 2 else "closed",
        "seq": seq,
        "boot_id": "boot-1",
        "ts": NOW + seq,
        "mono_ns": seq,
        "clock_synced": True,
        "prev": prev,
    }
    data.update(changes)
    return EventBody(**data)


CHAIN = []
_prev = GENESIS
for _seq in range(1, COMMITTED + 2):
    _event = sign(body(_seq, _prev), KEY)
    CHAIN.append(_event)
    _prev = event_hash(_event)


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    book = ChainBook(tmp_path_factory.mktemp("hostile-ingest") / "chain.sqlite3")
    handler = Ingest(Keys(), book)
    for event in CHAIN[:COMMITTED]:
        assert isinstance(handler.handle(UNIT.event, event.to_json()), Accepted)
    book.commit(NOW)
    yield handler
    book.close()


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    total = sum(RUNS.values())
    detail = ", ".join(f"{name} {n}" for name, n in sorted(RUNS.items()))
    say(request, f"hostile ingest: {total} cases ({detail})")


def handle(ingest: Ingest, topic: str, payload: bytes) -> Accepted | Duplicate | Rejected:
    """What the collector does with one message, up to the points it would write."""
    try:
        outcome = ingest.handle(topic, payload)
        if isinstance(outcome, Rejected):
            assert outcome.detail, "a dead letter says why"
            letter = outcome.dead_letter(NOW)
            assert DeadLetter.model_validate_json(letter.to_json()) == letter
            assert letter.reason.startswith(outcome.reason.value)
            points.deadletter_point(outcome, NOW).to_line_protocol()
            if outcome.is_integrity:
                points.integrity_point(outcome, NOW).to_line_protocol()
        elif isinstance(outcome, Accepted):
            msg = outcome.message
            if isinstance(msg, models.Event):
                assert outcome.digest is not None
                points.event_point(msg, outcome.digest, payload).to_line_protocol()
            elif isinstance(msg, models.Heartbeat):
                points.heartbeat_point(msg, NOW).to_line_protocol()
            else:
                points.status_point(msg, NOW).to_line_protocol()
        return outcome
    finally:
        ingest.chain.rollback()  # nothing hostile is kept: each case meets the same book


def rejected(outcome: object) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    return outcome


HYPO = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies --------------------------------------------------------------------------------

STRANGE = [
    "",
    ".",
    "..",
    "+",
    "#",
    "\x00",
    "gudang-\u00e9",
    "ГУДАНГ-01",
    "gu\u200bdang",
    "😀",
    "a" * 300,
    " ",
    "$SYS",
    "deadletter",
    "cmd",
    "arming",
    "Gudang-01",
]
level = (
    st.sampled_from(STRANGE)
    | st.text(max_size=20)
    | st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)
)
good_levels = ["jaga", "v1", SITE, DEVICE, "event"]


@st.composite
def hostile_topics(draw: st.DrawFn) -> str:
    """A unit topic with some levels replaced, some added, some removed; or any text."""
    if draw(st.booleans()):
        return draw(st.text(max_size=200))
    levels = list(good_levels)
    for i in draw(st.lists(st.integers(0, len(levels) - 1), max_size=3)):
        levels[i] = draw(level)
    if draw(st.booleans()):
        levels.insert(draw(st.integers(0, len(levels))), draw(level))
    if draw(st.booleans()) and len(levels) > 1:
        levels.pop(draw(st.integers(0, len(levels) - 1)))
    return "/".join(levels)


leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(STRANGE)
    | st.sampled_from([-(2**63), -1, 0, models.MAX_TS_NS, 2**63, 2**64, 10**40])
    | st.just("x" * 300_000)
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


CHANNELS = [UNIT.event, UNIT.heartbeat, UNIT.status]

# -- the tests ---------------------------------------------------------------------------------


@HYPO
@given(topic=hostile_topics(), payload=st.binary(max_size=512))
def test_any_topic_with_any_bytes_is_an_outcome_never_an_exception(
    ingest: Ingest, topic: str, payload: bytes
) -> None:
    RUNS["hostile topic"] += 1
    outcome = rejected(handle(ingest, topic, payload))
    try:
        where = topics.parse_device_topic(topic)
    except topics.TopicError:
        assert outcome.reason is Reason.TOPIC, outcome
        return
    stored = where.channel.value in ("event", "heartbeat", "status")
    assert outcome.reason is (Reason.PAYLOAD if stored else Reason.UNSUPPORTED), outcome


@HYPO
@given(topic=st.sampled_from(CHANNELS), payload=st.binary(max_size=4096))
def test_arbitrary_bytes_on_a_good_topic_are_dead_lettered(
    ingest: Ingest, topic: str, payload: bytes
) -> None:
    RUNS["arbitrary bytes"] += 1
    assert rejected(handle(ingest, topic, payload)).reason is Reason.PAYLOAD


@HYPO
@given(topic=st.sampled_from(CHANNELS), value=json_values)
def test_any_json_on_a_good_topic_is_dead_lettered(ingest: Ingest, topic: str, value: Any) -> None:
    RUNS["any JSON"] += 1
    assert rejected(handle(ingest, topic, dumps(value))).reason in (
        Reason.PAYLOAD,
        Reason.TOO_LARGE,
    )


@pytest.mark.parametrize("topic", CHANNELS)
@pytest.mark.parametrize("depth", [10, 200, 10_000, 100_000])
@pytest.mark.parametrize("shape", [b"[", b'{"a":', b'{"site":{"a":'])
def test_deep_json_is_dead_lettered(ingest: Ingest, topic: str, depth: int, shape: bytes) -> None:
    RUNS["deep JSON"] += 1
    closer = b"]" if shape == b"[" else b"}"
    payload = shape * depth + b"1" + closer * depth * shape.count(b"{" if closer == b"}" else b"[")
    assert rejected(handle(ingest, topic, payload)).reason in (Reason.PAYLOAD, Reason.TOO_LARGE)


@pytest.mark.parametrize("size", [MAX_PAYLOAD, MAX_PAYLOAD + 1, 4 * MAX_PAYLOAD])
def test_an_oversized_payload_is_dead_lettered_with_its_real_size(
    ingest: Ingest, size: int
) -> None:
    RUNS["oversized"] += 1
    payload = b'{"site":"' + b"x" * size + b'"}'
    outcome = rejected(handle(ingest, UNIT.event, payload))
    assert outcome.reason is Reason.TOO_LARGE
    assert outcome.dead_letter(NOW).payload_len == len(payload)


EVENT_FIELDS = sorted(body(1, GENESIS).model_dump(mode="json"))


@HYPO
@given(data=st.data())
def test_events_with_hostile_fields_signed_by_the_unit_are_stored_or_dead_lettered(
    ingest: Ingest, data: st.DataObject
) -> None:
    """The unit's own key signs whatever a broken or subverted unit puts in the fields: far
    times, NaN, huge or unicode strings, wrong types. A valid event is stored; others are
    dead-lettered with their reason."""
    RUNS["signed hostile event"] += 1
    seq = data.draw(st.integers(1, COMMITTED + 2))
    fields = body(seq, event_hash(CHAIN[seq - 2]) if seq > 1 else GENESIS).model_dump(mode="json")
    for name in data.draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=3, unique=True)):
        fields[name] = data.draw(json_values)
    if data.draw(st.booleans()):
        fields[data.draw(st.text(max_size=8))] = data.draw(json_values)
    raw = KEY.sign(canonical_bytes(fields))
    fields["sig"] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    outcome = handle(ingest, UNIT.event, dumps(fields))
    if isinstance(outcome, Rejected):
        assert outcome.reason in (
            Reason.PAYLOAD,
            Reason.TOO_LARGE,
            Reason.MISMATCH,
            Reason.UNKNOWN_UNIT,
            Reason.SIGNATURE,
            Reason.FORK,
            Reason.CHAIN,
            Reason.TIME,
        ), outcome
    else:
        assert isinstance(outcome, Accepted | Duplicate), outcome


@HYPO
@given(
    ts=st.integers(-(2**70), 2**70)
    | st.sampled_from([NOW + COMMITTED - 1, NOW + COMMITTED, NOW + COMMITTED + 1]),
    seq=st.integers(COMMITTED + 1, COMMITTED + 1),
)
def test_an_event_from_far_past_or_future_is_stored_only_within_the_contract(
    ingest: Ingest, ts: int, seq: int
) -> None:
    RUNS["far times"] += 1
    prev = event_hash(CHAIN[seq - 2])
    fields = body(seq, prev).model_dump(mode="json")
    fields["ts"] = ts
    fields["sig"] = (
        base64.urlsafe_b64encode(KEY.sign(canonical_bytes(fields))).rstrip(b"=").decode()
    )
    outcome = handle(ingest, UNIT.event, dumps(fields))
    last = CHAIN[seq - 2].ts
    if last < ts < models.MAX_TS_NS:
        assert isinstance(outcome, Accepted), outcome
    elif 0 <= ts <= last:  # valid, but not after the unit's previous event: it would overwrite
        assert rejected(outcome).reason is Reason.TIME
    else:
        assert rejected(outcome).reason is Reason.PAYLOAD


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
@pytest.mark.parametrize("field", ["cpu_temp_c", "uptime_s", "ts", "disk_free_mb", "last_seq"])
def test_nan_and_infinity_in_a_heartbeat_are_dead_lettered(
    ingest: Ingest, literal: str, field: str
) -> None:
    RUNS["NaN/inf"] += 1
    beat = {
        "v": 1,
        "site": SITE,
        "device": DEVICE,
        "ts": NOW,
        "boot_id": "b",
        "uptime_s": 1,
        "interval_s": 10,
        "outbox_depth": 0,
        "clock_synced": True,
        "last_seq": 3,
        "chain_head": GENESIS,
        field: "__HOLE__",
    }
    payload = json.dumps(beat).replace('"__HOLE__"', literal).encode()
    assert rejected(handle(ingest, UNIT.heartbeat, payload)).reason is Reason.PAYLOAD


@pytest.mark.parametrize(
    "name", ["gudang-\u00e9", "ГУДАНГ", "gudang\u200b01", "😀", "Gudang-01", "gudang_01", "-x-"]
)
def test_unicode_and_odd_names_never_pass_as_units(ingest: Ingest, name: str) -> None:
    RUNS["unicode names"] += 1
    topic_outcome = handle(ingest, f"jaga/v1/{SITE}/{name}/event", CHAIN[0].to_json())
    assert rejected(topic_outcome).reason is Reason.TOPIC
    fields = CHAIN[0].model_dump(mode="json")
    fields["device"] = name
    payload_outcome = handle(ingest, UNIT.event, dumps(fields))
    assert rejected(payload_outcome).reason is Reason.PAYLOAD


@HYPO
@given(
    event_id=st.sampled_from(["ev-1", "..", "", "x" * 100]) | st.text(max_size=20),
    payload=st.binary(max_size=600)
    | st.builds(
        lambda h, b: h + b"\n" + b,
        st.sampled_from(
            [
                b'{"v":1,"event":"ev-1","sha256":"'
                + b"ab" * 32
                + b'","role":"still","size":10,"index":0,"count":2,"offset":0}',
                b"{}",
                b"null",
            ]
        ),
        st.binary(max_size=40),
    ),
)
def test_picture_chunks_of_any_shape_are_pictures_or_refused(event_id: str, payload: bytes) -> None:
    RUNS["picture chunks"] += 1
    assembler = snapshot.Reassembler(max_file_bytes=1024, max_pending_bytes=4096)
    try:
        assembler.feed(event_id, payload)
        assembler.feed(event_id, payload)
    except models.WireError as exc:
        assert str(exc)


def test_the_real_chain_is_untouched_by_all_of_it(ingest: Ingest) -> None:
    """After every hostile case: the next genuine event is still just the next event."""
    RUNS["genuine"] += 1
    assert ingest.chain.last_seq(DEVICE) == COMMITTED
    assert isinstance(handle(ingest, UNIT.event, CHAIN[COMMITTED].to_json()), Accepted)
    assert isinstance(handle(ingest, UNIT.event, CHAIN[0].to_json()), Duplicate)
