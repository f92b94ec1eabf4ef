"""Signatures bind every field of an event, and the hash chain binds each event to the last."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol import models, signing
from protocol.models import Event, EventBody, Kind, WireError
from protocol.signing import (
    GENESIS,
    PrivateKey,
    SignatureError,
    canonical_bytes,
    event_hash,
    sign,
    verify,
)

ED_KEY = ed25519.Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
KEYS = pytest.mark.parametrize("key", [ED_KEY, EC_KEY], ids=["ed25519", "p256"])


def body(**changes: Any) -> EventBody:
    data: dict[str, Any] = {
        "id": "0f1e2d3c",
        "site": "gudang-3",
        "device": "pintu-1",
        "sensor": "pintu-utama",
        "kind": Kind.DOOR,
        "state": "open",
        "seq": 1,
        "boot_id": "boot-1",
        "ts": 1_700_000_000_000_000_000,
        "mono_ns": 5_000_000_000,
        "clock_synced": True,
        "prev": GENESIS,
    }
    data.update(changes)
    return EventBody(**data)


@KEYS
def test_a_signed_event_verifies_with_the_units_public_key(key: PrivateKey) -> None:
    event = sign(body(), key)
    verify(event, key.public_key())
    assert event.model_dump(exclude={"sig"}) == body().model_dump()


@KEYS
def test_a_signed_event_still_verifies_after_a_trip_over_the_wire(key: PrivateKey) -> None:
    event = sign(body(snapshot_sha256=("0a" * 32, "0b" * 32)), key)
    received = models.parse(Event, event.to_json())
    verify(received, key.public_key())


@KEYS
def test_another_key_does_not_verify(key: PrivateKey) -> None:
    event = sign(body(), key)
    for other in (ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())):
        with pytest.raises(SignatureError):
            verify(event, other.public_key())


CHANGES: list[tuple[str, object]] = [
    ("id", "0f1e2d3d"),
    ("site", "gudang-4"),
    ("device", "pintu-2"),
    ("sensor", "pintu-belakang"),
    ("kind", Kind.TAMPER),
    ("state", "closed"),
    ("seq", 2),
    ("boot_id", "boot-2"),
    ("ts", 1_700_000_000_000_000_001),
    ("mono_ns", 5_000_000_001),
    ("clock_synced", False),
    ("snapshot_sha256", ("0a" * 32,)),
    ("cause", "0f1e2d3c"),
    ("checkpoint", models.Checkpoint(interval_s=300, uptime_s=1, sensors={})),
    ("prev", "ab" * 32),
]


def test_the_change_table_covers_every_signed_field() -> None:
    assert {f for f, _ in CHANGES} == set(EventBody.model_fields) - {"v"}


@KEYS
@pytest.mark.parametrize(("field", "value"), CHANGES, ids=[f for f, _ in CHANGES])
def test_changing_any_field_breaks_the_signature(
    key: PrivateKey, field: str, value: object
) -> None:
    event = sign(body(), key)
    altered = event.model_copy(update={field: value})
    with pytest.raises(SignatureError):
        verify(altered, key.public_key())


@KEYS
def test_a_checkpoints_sensor_states_are_signed(key: PrivateKey) -> None:
    closed = models.Checkpoint(interval_s=300, uptime_s=9, sensors={"pintu-utama": "closed"})
    event = sign(body(sensor="unit", kind=Kind.CHECKPOINT, state="armed", checkpoint=closed), key)
    verify(models.parse(Event, event.to_json()), key.public_key())
    opened = closed.model_copy(update={"sensors": {"pintu-utama": "open"}})
    with pytest.raises(SignatureError):
        verify(event.model_copy(update={"checkpoint": opened}), key.public_key())


@KEYS
def test_changing_any_byte_of_the_body_json_is_refused(key: PrivateKey) -> None:
    """Every one-byte change of the payload outside `sig` is caught by parsing or by verify."""
    event = sign(body(snapshot_sha256=("0a" * 32,)), key)
    payload = event.to_json()
    sig_start = payload.index(event.sig.encode())
    sig_span = range(sig_start, sig_start + len(event.sig))
    checked = 0
    for i in range(len(payload)):
        if i in sig_span:
            continue
        for new in {payload[i] ^ 0x01, ord("1") if payload[i] != ord("1") else ord("2")}:
            mutated = payload[:i] + bytes([new]) + payload[i + 1 :]
            try:
                received = models.parse(Event, mutated)
            except WireError:
                continue
            with pytest.raises(SignatureError):
                verify(received, key.public_key())
            checked += 1
    assert checked > 50  # many flips still parse; all of those must fail verification


@KEYS
def test_a_different_signature_of_the_right_length_is_refused(key: PrivateKey) -> None:
    event = sign(body(), key)
    first = "B" if event.sig[0] != "B" else "C"
    with pytest.raises(SignatureError):
        verify(event.model_copy(update={"sig": first + event.sig[1:]}), key.public_key())


def test_a_signature_of_another_length_is_refused() -> None:
    event = sign(body(), ED_KEY)
    for sig in (event.sig[:-4], event.sig + "AAAA", event.sig[:-1]):
        with pytest.raises(SignatureError):
            verify(event.model_copy(update={"sig": sig}), ED_KEY.public_key())


def test_a_signature_string_with_altered_padding_bits_is_refused() -> None:
    event = sign(body(), ED_KEY)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    accepted = []
    for c in alphabet:
        sig = event.sig[:-1] + c
        if sig == event.sig:
            continue
        try:
            verify(event.model_copy(update={"sig": sig}), ED_KEY.public_key())
        except SignatureError:
            continue
        accepted.append(sig)
    assert accepted == []


def test_canonical_bytes_do_not_depend_on_key_order() -> None:
    data = json.loads(sign(body(), ED_KEY).to_json())
    reordered = dict(reversed(list(data.items())))
    assert list(reordered) != list(data)
    assert canonical_bytes(reordered) == canonical_bytes(data) == canonical_bytes(body())


def test_canonical_bytes_leave_out_the_signature_and_absent_fields() -> None:
    event = sign(body(), ED_KEY)
    assert canonical_bytes(event) == canonical_bytes(body())
    decoded = json.loads(canonical_bytes(body()))
    assert "sig" not in decoded
    assert "snapshot_sha256" not in decoded
    assert canonical_bytes({**decoded, "snapshot_sha256": None}) == canonical_bytes(body())
    assert b" " not in canonical_bytes(body())


def _long_way(event: EventBody) -> bytes:
    """canonical_bytes as its definition reads: json.dumps of the model's dump."""
    data = event.model_dump(mode="json", exclude_none=True)
    data = {k: v for k, v in data.items() if k != "sig"}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"cause": "ev.cause:1_a-B"},
        {"snapshot_sha256": ("0a" * 32, "0b" * 32)},
        {"snapshot_sha256": ()},
        {"clock_synced": False, "seq": 2**63 - 1, "ts": 0, "mono_ns": 0},
        {"kind": Kind.MOTION, "state": "still", "sensor": "lorong", "id": "A.b:c_d-9" * 7},
        {
            "kind": Kind.CHECKPOINT,
            "state": "armed",
            "sensor": "unit",
            "checkpoint": {"interval_s": 300, "uptime_s": 7, "sensors": {"pintu-utama": "closed"}},
        },
    ],
    ids=["plain", "cause", "pictures", "no-pictures", "bounds", "motion", "checkpoint"],
)
def test_canonical_bytes_made_straight_from_the_fields_equal_the_long_way(
    changes: dict[str, Any],
) -> None:
    """Every event is hashed and verified by the collector: its canonical bytes are written
    straight from the fields (protocol.signing._plain_event_bytes), and must be the same bytes
    as json.dumps of the model; a new field turns the short way off until it writes it too."""
    plain = body(**changes)
    event = sign(plain, EC_KEY)
    assert signing._FAST, "EventBody has fields _plain_event_bytes does not write"
    for e in (plain, event, models.parse(Event, event.to_json())):
        assert canonical_bytes(e) == _long_way(e)
    if plain.checkpoint is None:
        assert signing._plain_event_bytes(plain) == _long_way(plain)


def test_every_text_of_an_event_is_plain_ascii_so_needs_no_json_escaping() -> None:
    """_plain_event_bytes writes texts between quotes as they are: the models' patterns
    refuse what JSON would escape (and it falls back to json.dumps if one ever slipped by)."""
    for field in ("id", "site", "device", "sensor", "state", "boot_id", "prev", "cause"):
        for bad in ('a"b', "a\\b", "a\nb", "a\u00e9b", "a\x7fb", "a\tb"):
            with pytest.raises(ValueError):
                body(**{field: bad})
    slipped = body().model_copy(update={"boot_id": 'boot"1\u00e9'})
    assert signing._plain_event_bytes(slipped) is None
    assert canonical_bytes(slipped) == _long_way(slipped)


def test_event_hash_is_a_sha256_hex_digest_and_stable() -> None:
    event = sign(body(), ED_KEY)
    assert len(event_hash(event)) == 64
    assert event_hash(event) == event_hash(models.parse(Event, event.to_json()))


def test_event_hash_covers_the_body_not_the_malleable_signature() -> None:
    event = sign(body(), EC_KEY)
    again = sign(body(), EC_KEY)  # ECDSA signatures are randomised (and malleable)
    assert again.sig != event.sig
    assert event_hash(again) == event_hash(event)
    assert event_hash(sign(body(state="closed"), EC_KEY)) != event_hash(event)


def test_event_hash_changes_when_the_body_changes() -> None:
    assert event_hash(sign(body(), ED_KEY)) != event_hash(sign(body(state="closed"), ED_KEY))


@KEYS
def test_the_chain_links_each_event_to_the_hash_of_the_one_before(key: PrivateKey) -> None:
    first = sign(body(seq=1, prev=GENESIS), key)
    second = sign(body(seq=2, prev=event_hash(first), state="closed"), key)
    third = sign(body(seq=3, prev=event_hash(second)), key)
    assert GENESIS == "0" * 64
    assert second.prev == event_hash(first)
    assert third.prev == event_hash(second)
    for event in (first, second, third):
        verify(event, key.public_key())
    # rewriting event 1 after the fact no longer matches what event 2 carries
    rewritten = sign(body(seq=1, prev=GENESIS, state="closed"), key)
    assert event_hash(rewritten) != second.prev
