"""Every payload is parsed strictly; anything off-contract is a WireError naming the field."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import models
from protocol.models import MAX_TS_NS, STATES, Event, Heartbeat, Kind, Status, WireError

SIG = "A" * 86


def event_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": 1,
        "id": "0f1e2d3c",
        "site": "gudang-3",
        "device": "pintu-1",
        "sensor": "pintu-utama",
        "kind": "door",
        "state": "open",
        "seq": 7,
        "boot_id": "boot-1",
        "ts": 1_700_000_000_000_000_000,
        "mono_ns": 123_456_789,
        "clock_synced": True,
        "prev": "ab" * 32,
        "sig": SIG,
    }
    data.update(changes)
    return data


def heartbeat_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": 1,
        "site": "gudang-3",
        "device": "pintu-1",
        "ts": 1_700_000_000_000_000_000,
        "boot_id": "boot-1",
        "uptime_s": 3600,
        "interval_s": 10,
        "cpu_temp_c": 48.5,
        "disk_free_mb": 1200,
        "outbox_depth": 0,
        "clock_synced": True,
        "last_seq": 7,
        "chain_head": "cd" * 32,
    }
    data.update(changes)
    return data


def status_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": 1,
        "site": "gudang-3",
        "device": "pintu-1",
        "state": "online",
        "boot_id": "boot-1",
        "version": "0.1.0",
        "sensors": ["pintu-utama", "pir-1"],
        "cert_not_after": 1_800_000_000,
    }
    data.update(changes)
    return data


def raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def test_event_parses_from_json_with_its_fields() -> None:
    event = models.parse(Event, raw(event_dict(snapshot_sha256=["0a" * 32])))
    assert event.kind is Kind.DOOR
    assert (event.site, event.device, event.seq, event.state) == ("gudang-3", "pintu-1", 7, "open")
    assert event.snapshot_sha256 == ("0a" * 32,)
    assert event.sig == SIG


def test_event_json_round_trips() -> None:
    event = models.parse(Event, raw(event_dict()))
    assert models.parse(Event, event.to_json()) == event
    assert b"snapshot_sha256" not in event.to_json()  # None fields are left out


def test_heartbeat_and_status_parse_from_json() -> None:
    hb = models.parse(Heartbeat, raw(heartbeat_dict()))
    assert (hb.last_seq, hb.cpu_temp_c, hb.disk_full) == (7, 48.5, False)
    st_ = models.parse(Status, raw(status_dict()))
    assert st_.sensors == ("pintu-utama", "pir-1")
    offline = models.parse(
        Status, raw({"site": "s1", "device": "d1", "state": "offline", "boot_id": "b"})
    )
    assert offline.state == "offline"


@pytest.mark.parametrize(
    ("model", "data"),
    [(Event, event_dict()), (Heartbeat, heartbeat_dict()), (Status, status_dict())],
)
def test_extra_fields_are_rejected_and_named(model: type[models.WireModel], data: dict) -> None:
    with pytest.raises(WireError, match=r"^colour: Extra inputs are not permitted"):
        models.parse(model, raw({**data, "colour": "red"}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "7"),  # strict: a string is not an int
        ("seq", 7.0),
        ("seq", True),
        ("ts", "1700000000"),
        ("clock_synced", 1),
        ("clock_synced", "true"),
        ("site", 3),
        ("snapshot_sha256", "0a" * 32),  # one string is not a list of them
        ("v", 2),
        ("kind", "DOOR"),
        ("kind", "window"),
    ],
)
def test_event_rejects_wrong_types_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(WireError, match=rf"^{field}\b"):
        models.parse(Event, raw(event_dict(**{field: value})))


@pytest.mark.parametrize("field", ["id", "site", "seq", "prev", "sig", "clock_synced"])
def test_event_missing_field_is_named(field: str) -> None:
    data = event_dict()
    del data[field]
    with pytest.raises(WireError, match=rf"^{field}: Field required"):
        models.parse(Event, raw(data))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("site", "Gudang"),
        ("device", "arming"),
        ("sensor", "pintu utama"),
        ("prev", "AB" * 32),
        ("prev", "ab" * 31),
        ("sig", "short"),
        ("sig", "A" * 85 + "="),
        ("id", "x" * 65),
        ("boot_id", "has space"),
        ("seq", 0),
        ("seq", 2**63),
        ("mono_ns", -1),
        ("snapshot_sha256", ["zz" * 32]),
    ],
)
def test_event_rejects_out_of_contract_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(WireError, match=rf"^{field}\b"):
        models.parse(Event, raw(event_dict(**{field: value})))


CHECKPOINT = {"interval_s": 300, "uptime_s": 42, "sensors": {"pintu-utama": "closed"}}


def kind_dict(kind: Kind, **changes: Any) -> dict[str, Any]:
    """An event of this kind; a checkpoint speaks for the unit and carries its body."""
    if kind is Kind.CHECKPOINT:
        changes = {"sensor": "unit", "checkpoint": CHECKPOINT, **changes}
    return event_dict(kind=kind.value, **changes)


@pytest.mark.parametrize("kind", list(Kind))
def test_every_state_of_a_kind_is_accepted(kind: Kind) -> None:
    for state in STATES[kind]:
        assert models.parse(Event, raw(kind_dict(kind, state=state))).state == state


def test_a_checkpoint_carries_each_inputs_state_and_round_trips() -> None:
    event = models.parse(Event, raw(kind_dict(Kind.CHECKPOINT, state="armed")))
    assert event.checkpoint is not None
    assert event.checkpoint.sensors == {"pintu-utama": "closed"}
    assert models.parse(Event, event.to_json()) == event


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"checkpoint": None}, "only a checkpoint"),
        ({"kind": "door", "state": "open"}, "only a checkpoint"),
        ({"sensor": "pintu-utama"}, "sensor is 'unit'"),
        ({"checkpoint": {**CHECKPOINT, "sensors": {"pintu": "checkin"}}}, "not one of"),
        ({"checkpoint": {**CHECKPOINT, "interval_s": 0}}, "checkpoint.interval_s"),
        ({"checkpoint": {**CHECKPOINT, "uptime_s": 2**63}}, "checkpoint.uptime_s"),
        ({"checkpoint": {**CHECKPOINT, "extra": 1}}, "checkpoint.extra"),
        (
            {"checkpoint": {**CHECKPOINT, "sensors": {f"s{i}": "closed" for i in range(65)}}},
            "checkpoint.sensors",
        ),
    ],
)
def test_a_checkpoint_out_of_contract_is_refused(changes: dict[str, Any], reason: str) -> None:
    data = {**kind_dict(Kind.CHECKPOINT, state="armed"), **changes}
    payload = json.dumps({k: v for k, v in data.items() if v is not None}).encode()
    with pytest.raises(WireError, match=reason):
        models.parse(Event, payload)


def test_an_event_of_another_kind_may_not_carry_a_checkpoint() -> None:
    with pytest.raises(WireError, match="only a checkpoint"):
        models.parse(Event, raw(event_dict(checkpoint=CHECKPOINT)))


@pytest.mark.parametrize(
    ("kind", "state"),
    [("door", "motion"), ("motion", "open"), ("patrol", "normal"), ("tamper", "checkin")],
)
def test_state_must_fit_the_kind(kind: str, state: str) -> None:
    with pytest.raises(WireError, match=rf"state '{state}' is not valid for kind {kind}"):
        models.parse(Event, raw(event_dict(kind=kind, state=state)))


@pytest.mark.parametrize("ts", [0, MAX_TS_NS - 1])
def test_ts_accepts_the_ends_of_its_range(ts: int) -> None:
    assert models.parse(Event, raw(event_dict(ts=ts))).ts == ts
    assert models.parse(Heartbeat, raw(heartbeat_dict(ts=ts))).ts == ts


@pytest.mark.parametrize("ts", [-1, MAX_TS_NS, 10**30])
def test_ts_outside_its_range_is_rejected(ts: int) -> None:
    with pytest.raises(WireError, match=r"^ts\b"):
        models.parse(Event, raw(event_dict(ts=ts)))
    with pytest.raises(WireError, match=r"^ts\b"):
        models.parse(Heartbeat, raw(heartbeat_dict(ts=ts)))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_heartbeat_rejects_non_finite_temperatures(literal: str) -> None:
    payload = raw(heartbeat_dict())[:-1] + f', "cpu_temp_c": {literal}}}'.encode()
    payload = payload.replace(b'"cpu_temp_c": 48.5, ', b"")
    with pytest.raises(WireError, match=r"^cpu_temp_c: Input should be a finite number"):
        models.parse(Heartbeat, payload)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu_temp_c", "48.5"),
        ("cpu_temp_c", 151),
        ("interval_s", 0),
        ("interval_s", 3601),
        ("outbox_depth", -1),
        ("disk_full", "no"),
        ("chain_head", "0"),
    ],
)
def test_heartbeat_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(WireError, match=rf"^{field}\b"):
        models.parse(Heartbeat, raw(heartbeat_dict(**{field: value})))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("state", "online-ish"),
        ("sensors", ["Pintu"]),
        ("version", "x" * 201),
        ("cert_not_after", -1),
    ],
)
def test_status_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(WireError, match=rf"^{field}\b"):
        models.parse(Status, raw(status_dict(**{field: value})))


def test_many_errors_are_summarised_with_a_count() -> None:
    with pytest.raises(WireError, match=r"\(\+\d+ more\)$"):
        models.parse(Event, b"{}")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b"null",
        b'"a string"',
        b"{" * 50_000,
        b"[" * 50_000 + b"]" * 50_000,
        b'{"site": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}",
        raw(event_dict())[:-5],
    ],
)
def test_garbage_and_deep_json_give_a_wire_error(payload: bytes) -> None:
    for model in (Event, Heartbeat, Status):
        with pytest.raises(WireError):
            models.parse(model, payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_ever_raise_wire_error(payload: bytes) -> None:
    with contextlib.suppress(WireError):
        models.parse(Event, payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(event_dict())), json_values, max_size=6))
def test_any_replaced_fields_give_an_event_or_a_wire_error(changes: dict[str, Any]) -> None:
    payload = json.dumps(event_dict(**changes)).encode()
    try:
        event = models.parse(Event, payload)
    except WireError:
        return
    assert event.state in STATES[event.kind]


# -- bounds: every integer stored in InfluxDB fits its int64 (finding 11) ----------------------


def test_the_heartbeat_that_influxdb_refused_is_refused_here_naming_uptime() -> None:
    with pytest.raises(WireError) as refused:
        models.parse(Heartbeat, raw(heartbeat_dict(uptime_s=2**64)))
    assert str(refused.value) == (
        f"uptime_s: Input should be less than or equal to {models.MAX_UPTIME_S}"
    )


HEARTBEAT_BOUNDS = [
    ("uptime_s", models.MAX_UPTIME_S),
    ("disk_free_mb", models.MAX_MB),
    ("outbox_depth", models.MAX_COUNT),
    ("last_seq", models.MAX_SEQ),
    ("cert_days_left", models.MAX_CERT_DAYS),
    ("connected_since_s", models.MAX_UPTIME_S),
    ("evidence_used_mb", models.MAX_MB),
    ("evidence_held_mb", models.MAX_MB),
    ("evidence_refused", models.MAX_COUNT),
]


@pytest.mark.parametrize(("field", "limit"), HEARTBEAT_BOUNDS)
def test_heartbeat_figures_are_kept_up_to_their_bound_and_refused_past_it(
    field: str, limit: int
) -> None:
    assert getattr(models.parse(Heartbeat, raw(heartbeat_dict(**{field: limit}))), field) == limit
    with pytest.raises(WireError, match=rf"^{field}: Input should be less than or equal to"):
        models.parse(Heartbeat, raw(heartbeat_dict(**{field: limit + 1})))
    low = -models.MAX_CERT_DAYS - 1 if field == "cert_days_left" else -1
    with pytest.raises(WireError, match=rf"^{field}: Input should be greater than or equal to"):
        models.parse(Heartbeat, raw(heartbeat_dict(**{field: low})))


def test_an_expired_certificate_counts_negative_days_within_bounds() -> None:
    beat = models.parse(Heartbeat, raw(heartbeat_dict(cert_days_left=-models.MAX_CERT_DAYS)))
    assert beat.cert_days_left == -models.MAX_CERT_DAYS


def test_a_status_certificate_expiry_is_bounded_by_what_x509_can_state() -> None:
    latest = models.MAX_CERT_SECONDS  # 9999-12-31T23:59:59Z, "no well-defined expiration"
    assert models.parse(Status, raw(status_dict(cert_not_after=latest))).cert_not_after == latest
    with pytest.raises(WireError, match=r"^cert_not_after: Input should be less than or equal"):
        models.parse(Status, raw(status_dict(cert_not_after=latest + 1)))


@pytest.mark.parametrize(("field", "limit"), [("seq", models.MAX_SEQ), ("mono_ns", 2**63 - 1)])
def test_event_integers_are_refused_past_int64(field: str, limit: int) -> None:
    assert getattr(models.parse(Event, raw(event_dict(**{field: limit}))), field) == limit
    with pytest.raises(WireError, match=rf"^{field}: Input should be less than"):
        models.parse(Event, raw(event_dict(**{field: limit + 1})))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_temperature_is_refused_from_code_too(value: float) -> None:
    """The agent builds its heartbeat in Python: a broken sensor's NaN never reaches InfluxDB."""
    with pytest.raises(ValueError, match="cpu_temp_c"):
        Heartbeat.model_validate(heartbeat_dict(cpu_temp_c=value))
