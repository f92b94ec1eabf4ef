"""Every message model on the wire, fed hostile input: arbitrary bytes, any JSON, wrong types,
huge strings, deep nesting, unicode, timestamps far in the past or future, NaN and infinity.
Each payload ends as a model (that round-trips) or a WireError with a reason; nothing else
escapes `protocol.models.parse`. The number of cases run is printed at the end."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import alerting, commands, models, snapshot
from protocol.models import WireError, WireModel
from tests.support import say

_DEFINED = (alerting, commands, snapshot)  # imported so that their models exist
RUNS: Counter[str] = Counter()
NOW = 1_795_000_000_000_000_000
HEX = "ab" * 32


def wire_models() -> list[type[WireModel]]:
    """Every WireModel subclass the protocol package defines (new ones are picked up)."""
    found: list[type[WireModel]] = []
    todo = list(WireModel.__subclasses__())
    while todo:
        model = todo.pop()
        if model.__module__.startswith("protocol.") and model not in found:
            found.append(model)
        todo.extend(model.__subclasses__())
    return sorted(found, key=lambda m: m.__name__)


MODELS = wire_models()

SAMPLES: dict[str, dict[str, Any]] = {
    "EventBody": {
        "v": 1,
        "id": "0f1e2d3c",
        "site": "gudang-3",
        "device": "pintu-1",
        "sensor": "pintu-utama",
        "kind": "door",
        "state": "open",
        "seq": 7,
        "boot_id": "boot-1",
        "ts": NOW,
        "mono_ns": 123_456_789,
        "clock_synced": True,
        "prev": HEX,
    },
    "Checkpoint": {
        "interval_s": 300,
        "uptime_s": 86_400,
        "sensors": {"pintu-utama": "closed", "pir-gudang": "still", "casing": "normal"},
    },
    "Heartbeat": {
        "site": "gudang-3",
        "device": "pintu-1",
        "ts": NOW,
        "boot_id": "boot-1",
        "uptime_s": 3600,
        "interval_s": 10,
        "cpu_temp_c": 48.5,
        "disk_free_mb": 1200,
        "outbox_depth": 0,
        "clock_synced": True,
        "last_seq": 7,
        "chain_head": HEX,
    },
    "Status": {
        "site": "gudang-3",
        "device": "pintu-1",
        "state": "online",
        "boot_id": "boot-1",
        "version": "0.1.0",
        "sensors": ["pintu-utama"],
        "cert_not_after": 1_800_000_000,
    },
    "DeadLetter": {
        "topic": "jaga/v1/x/y/event",
        "reason": "bad-payload: x",
        "received_ts": NOW,
        "payload_b64": "AAAA",
        "payload_len": 3,
    },
    "Resend": {"by": "collector:main", "ts": NOW, "first_seq": 1, "last_seq": 9},
    "SiteCommand": {
        "site": "gudang-3",
        "cmd": "disarm",
        "by": "operator:demo",
        "ts": NOW,
        "nonce": "A" * 22,
        "how": "mqtt",
    },
    "Snapshot": {"by": "operator:demo", "ts": NOW},
    "Bypass": {
        "device": "pintu-1",
        "sensor": "door",
        "zone": "perimeter",
        "by": "operator:demo",
        "reason": "kontak rusak",
        "since": NOW,
        "until": NOW + 7_200_000_000_000,
    },
    "DisarmRequest": {"by": "siti", "account": "siti", "at": NOW, "until": NOW + 60_000_000_000},
    "ZoneArming": {
        "zone": "ruang-surat-suara",
        "state": "armed",
        "since": NOW,
        "by": "schedule",
        "how": "schedule",
        "two_person": True,
        "members": ["pintu-1/door", "pir-2"],
    },
    "Live": {"by": "collector:main", "ts": NOW, "lease_s": 10, "fps": 2},
    "SignedCommand": {"body": "{}", "cert": "-----BEGIN CERTIFICATE-----", "sig": "A" * 86},
    "CommandResult": {"cmd": "resend", "ok": True, "detail": "requeued", "ts": NOW},
    "SnapshotChunk": {
        "event": "ev-1",
        "sha256": HEX,
        "role": "still",
        "size": 1000,
        "index": 0,
        "count": 2,
        "offset": 0,
    },
    "Alert": {
        "id": "door-forced-1",
        "site": "gudang-3",
        "device": "pintu-1",
        "rule": "door-forced",
        "severity": "critical",
        "state": "raised",
        "latched": True,
        "title": "Door forced",
        "count": 1,
        "raised_at": NOW,
        "last_seen": NOW,
    },
    "ArmingState": {
        "site": "gudang-3",
        "state": "armed",
        "since": NOW,
        "by": "budi",
        "how": "cli",
        "exit_delay_s": 30,
        "entry_delay_s": 30,
    },
    "ArmingAudit": {
        "site": "gudang-3",
        "at": NOW,
        "from_state": "disarmed",
        "to_state": "armed",
        "by": "budi",
        "how": "cli",
    },
    "OperatorCommand": {"by": "budi", "how": "cli"},
}
SAMPLES["Event"] = {**SAMPLES["EventBody"], "sig": "A" * 86}

# -- hostile values ---------------------------------------------------------------------------

HUGE = ["x" * 1_000_000, "é" * 300_000, "9" * 5000]
STRANGE_TEXT = [
    "",
    " ",
    "\x00",
    "gudang-\u00e9",
    "ГУДАНГ-01",
    "\u202egudang",  # right-to-left override
    "gu\u200bdang",  # zero-width space
    "😀",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "jaga/v1/+/#",
    "../../etc/passwd",
    "a\nb",
    "NaN",
    "Infinity",
]
FAR_TIMES = [
    -(2**63),
    -1,
    0,
    1,
    models.MAX_TS_NS - 1,
    models.MAX_TS_NS,
    2**63,
    2**64,
    10**30,
]
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(FAR_TIMES)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(STRANGE_TEXT)
    | st.sampled_from(HUGE)
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON as a hostile sender writes it: NaN and Infinity literals included."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def deep(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    if kind == "dict":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"site":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


def outcome(model: type[WireModel], payload: bytes) -> str:
    """Parse; a model must round-trip through its own JSON. Returns 'model' or 'refused'."""
    try:
        parsed = models.parse(model, payload)
    except WireError as exc:
        assert str(exc), "a WireError must say why"
        return "refused"
    assert models.parse(model, parsed.to_json()) == parsed
    return "model"


UNBOUNDED_TIMES = {("DeadLetter", "received_ts"), ("CommandResult", "ts")}

HYPO = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    total = sum(RUNS.values())
    detail = ", ".join(f"{name} {n}" for name, n in sorted(RUNS.items()))
    say(request, f"hostile models: {total} cases over {len(MODELS)} models ({detail})")


def test_every_model_has_a_valid_sample_to_mutate() -> None:
    for model in MODELS:
        assert model.__name__ in SAMPLES, f"add a sample of {model.__name__} to SAMPLES"
        assert outcome(model, dumps(SAMPLES[model.__name__])) == "model", model.__name__


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@HYPO
@given(payload=st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_with_a_reason(model: type[WireModel], payload: bytes) -> None:
    RUNS["arbitrary bytes"] += 1
    assert outcome(model, payload) in ("model", "refused")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@HYPO
@given(value=json_values)
def test_any_json_value_is_a_model_or_refused(model: type[WireModel], value: Any) -> None:
    RUNS["any JSON"] += 1
    outcome(model, dumps(value))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@HYPO
@given(data=st.data())
def test_fields_replaced_removed_or_added_are_a_model_or_refused(
    model: type[WireModel], data: st.DataObject
) -> None:
    RUNS["mutated fields"] += 1
    sample = dict(SAMPLES[model.__name__])
    names = sorted(sample) + sorted(set(model.model_fields) - set(sample))
    for name in data.draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
        sample[name] = data.draw(json_values)
    for name in data.draw(st.lists(st.sampled_from(sorted(sample)), max_size=2, unique=True)):
        sample.pop(name)
    if data.draw(st.booleans()):
        sample[data.draw(st.text(max_size=12))] = data.draw(json_values)
    outcome(model, dumps(sample))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@HYPO
@given(data=st.data())
def test_wrong_types_far_times_nan_and_huge_strings_in_each_field_are_refused(
    model: type[WireModel], data: st.DataObject
) -> None:
    RUNS["hostile value per field"] += 1
    sample = dict(SAMPLES[model.__name__])
    name = data.draw(st.sampled_from(sorted(model.model_fields)))
    literal = data.draw(
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "1.5", '"1"', "[]", "{}"])
    )
    text = dumps({**sample, name: "__HOLE__"}).replace(b'"__HOLE__"', literal.encode())
    got = outcome(model, text)
    if literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        assert got == "refused", f"{model.__name__}.{name} took {literal}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("kind", ["list", "dict", "in-a-field"])
@pytest.mark.parametrize("depth", [64, 1000, 100_000])
def test_deep_json_is_refused(model: type[WireModel], kind: str, depth: int) -> None:
    RUNS["deep JSON"] += 1
    assert outcome(model, deep(depth, kind)) == "refused"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@HYPO
@given(value=st.sampled_from(FAR_TIMES) | st.integers())
def test_any_integer_in_a_time_field_is_a_model_in_range_or_refused(
    model: type[WireModel], value: int
) -> None:
    RUNS["far times"] += 1
    sample = SAMPLES[model.__name__]
    times = [n for n in ("ts", "received_ts", "since", "at", "raised_at") if n in sample]
    for name in times:
        got = outcome(model, dumps({**sample, name: value}))
        # The collector's own DeadLetter.received_ts and a unit's CommandResult.ts have no
        # upper bound; every time a unit or an operator sets is bounded.
        bounded = (model.__name__, name) not in UNBOUNDED_TIMES
        if bounded and not 0 <= value < models.MAX_TS_NS:
            assert got == "refused", (name, value)


def test_an_arming_audit_without_from_state_round_trips() -> None:
    """The first audit of a site has no from_state (was a bug: it did not parse back)."""
    RUNS["round trip"] += 1
    first = {k: v for k, v in SAMPLES["ArmingAudit"].items() if k != "from_state"}
    audit = models.parse(alerting.ArmingAudit, dumps(first))
    assert models.parse(alerting.ArmingAudit, audit.to_json()) == audit


# -- integers InfluxDB can store ---------------------------------------------------------------

NOT_STORED = {("CommandResult", "ts")}
"""Integers the collector never writes to InfluxDB (a unit's answer to a command is logged and
shown, not stored), so int64 does not bound them."""
BEYOND_INT64 = [2**63, 2**64, 10**30, -(2**63) - 1, -(10**30)]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_integer_field_refuses_what_influxdb_cannot_store_naming_the_field(
    model: type[WireModel],
) -> None:
    """InfluxDB keeps integer fields as int64 and refuses a whole write holding one beyond
    it: such a value must be refused here, where the reason reaches the dead letter."""
    sample = SAMPLES.get(model.__name__)
    if sample is None:
        pytest.skip(f"no sample of {model.__name__} (test_every_model_has_a_valid_sample...)")
    for name in sorted(model.model_fields):
        if (model.__name__, name) in NOT_STORED:
            continue
        for value in BEYOND_INT64:
            RUNS["beyond int64"] += 1
            with pytest.raises(WireError) as refused:
                models.parse(model, dumps({**sample, name: value}))
            if model.__module__ in ("protocol.models", "protocol.alerting"):
                # what units and the alert engine store: the reason names the field
                assert str(refused.value).startswith(name), (model.__name__, str(refused.value))
