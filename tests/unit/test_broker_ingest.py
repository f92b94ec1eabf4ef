"""Ingest turns (topic, payload) into Accepted, Duplicate or Rejected — never an exception."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from broker import signatures
from broker.chain import ChainBook
from broker.ingest import MAX_PAYLOAD, Accepted, Duplicate, Ingest, Reason, Rejected
from protocol import models
from protocol.models import DeadLetter, Event, EventBody, Heartbeat, Kind, Status
from protocol.signing import GENESIS, PrivateKey, PublicKey, event_hash, sign
from protocol.topics import DeviceTopics

SITE, DEVICE = "gudang-3", "pintu-1"
UNIT = DeviceTopics(SITE, DEVICE)
KEY = ed25519.Ed25519PrivateKey.generate()
NOW = 1_700_000_000_000_000_000


class Keys:
    """The public keys the collector knows, by unit."""

    def __init__(self, known: dict[tuple[str, str], list[PublicKey]]) -> None:
        self.known = known

    def keys(self, site: str, device: str) -> list[PublicKey]:
        return self.known.get((site, device), [])


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[ChainBook]:
    book = ChainBook(tmp_path / "chain.sqlite3")
    yield book
    book.close()


@pytest.fixture
def ingest(chain: ChainBook) -> Ingest:
    return Ingest(Keys({(SITE, DEVICE): [KEY.public_key()]}), chain)


def event(seq: int = 1, prev: str = GENESIS, key: PrivateKey = KEY, **changes: Any) -> Event:
    data: dict[str, Any] = {
        "id": f"ev{seq}",
        "site": SITE,
        "device": DEVICE,
        "sensor": "pintu-utama",
        "kind": Kind.DOOR,
        "state": "open",
        "seq": seq,
        "boot_id": "boot-1",
        "ts": NOW + seq,  # growing with seq, as the unit's outbox makes it
        "mono_ns": seq,
        "clock_synced": True,
        "prev": prev,
    }
    data.update(changes)
    return sign(EventBody(**data), key)


def heartbeat(**changes: Any) -> bytes:
    data: dict[str, Any] = {
        "site": SITE,
        "device": DEVICE,
        "ts": NOW,
        "boot_id": "boot-1",
        "uptime_s": 60,
        "interval_s": 10,
        "outbox_depth": 0,
        "clock_synced": True,
        "last_seq": 0,
        "chain_head": GENESIS,
    }
    data.update(changes)
    return json.dumps(data).encode()


def rejected(outcome: object, reason: Reason) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason is reason, outcome
    return outcome


def test_a_good_signed_event_is_accepted_with_its_digest(ingest: Ingest) -> None:
    ev = event()
    outcome = ingest.handle(UNIT.event, ev.to_json())
    assert outcome == Accepted(SITE, DEVICE, ev, event_hash(ev))


def test_an_event_signed_with_p256_is_accepted(chain: ChainBook) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ingest = Ingest(Keys({(SITE, DEVICE): [key.public_key()]}), chain)
    assert isinstance(ingest.handle(UNIT.event, event(key=key).to_json()), Accepted)


def test_any_of_the_units_keys_may_have_signed(chain: ChainBook) -> None:
    old, new = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    ingest = Ingest(Keys({(SITE, DEVICE): [new.public_key(), old.public_key()]}), chain)
    assert isinstance(ingest.handle(UNIT.event, event(key=old).to_json()), Accepted)


def test_a_chain_of_events_is_accepted_in_order(ingest: Ingest) -> None:
    first = event(1)
    second = event(2, prev=event_hash(first), state="closed")
    assert isinstance(ingest.handle(UNIT.event, first.to_json()), Accepted)
    assert isinstance(ingest.handle(UNIT.event, second.to_json()), Accepted)


@pytest.mark.parametrize(
    "changes", [{"site": "gudang-4"}, {"device": "pintu-2"}], ids=["site", "device"]
)
def test_a_payload_naming_another_unit_than_the_topic_is_a_mismatch(
    chain: ChainBook, changes: dict[str, str]
) -> None:
    other = (changes.get("site", SITE), changes.get("device", DEVICE))
    known: dict[tuple[str, str], list[PublicKey]] = {
        (SITE, DEVICE): [KEY.public_key()],
        other: [KEY.public_key()],
    }
    ingest = Ingest(Keys(known), chain)
    ev = event(**changes)
    outcome = rejected(ingest.handle(UNIT.event, ev.to_json()), Reason.MISMATCH)
    assert (outcome.site, outcome.device) == (SITE, DEVICE)
    assert outcome.is_integrity
    assert f"{other[0]}/{other[1]}" in outcome.detail


def test_a_heartbeat_for_another_unit_is_a_mismatch(ingest: Ingest) -> None:
    rejected(ingest.handle(UNIT.heartbeat, heartbeat(device="pintu-2")), Reason.MISMATCH)


def test_a_tampered_byte_is_a_bad_signature(ingest: Ingest) -> None:
    payload = event().to_json().replace(b'"state":"open"', b'"state":"held-open"')
    outcome = rejected(ingest.handle(UNIT.event, payload), Reason.SIGNATURE)
    assert outcome.is_integrity
    assert (outcome.seq, outcome.event_id) == (1, "ev1")


def test_an_event_signed_by_another_key_is_a_bad_signature(ingest: Ingest) -> None:
    forged = event(key=ed25519.Ed25519PrivateKey.generate())
    rejected(ingest.handle(UNIT.event, forged.to_json()), Reason.SIGNATURE)


def test_a_bad_signature_is_not_staged_in_the_chain(ingest: Ingest, chain: ChainBook) -> None:
    forged = event(key=ed25519.Ed25519PrivateKey.generate())
    ingest.handle(UNIT.event, forged.to_json())
    assert chain.commit(NOW) == []
    assert isinstance(ingest.handle(UNIT.event, event().to_json()), Accepted)


def test_an_unknown_unit_is_rejected(chain: ChainBook) -> None:
    ingest = Ingest(Keys({}), chain)
    outcome = rejected(ingest.handle(UNIT.event, event().to_json()), Reason.UNKNOWN_UNIT)
    assert f"{SITE}/{DEVICE}" in outcome.detail


def test_the_same_event_twice_is_a_duplicate(ingest: Ingest, chain: ChainBook) -> None:
    payload = event().to_json()
    assert isinstance(ingest.handle(UNIT.event, payload), Accepted)
    assert ingest.handle(UNIT.event, payload) == Duplicate(SITE, DEVICE, 1)
    chain.commit(NOW)
    assert ingest.handle(UNIT.event, payload) == Duplicate(SITE, DEVICE, 1)


def test_a_redelivery_is_a_duplicate_without_verifying_it_again(
    ingest: Ingest, chain: ChainBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = event().to_json()
    assert isinstance(ingest.handle(UNIT.event, payload), Accepted)
    verified: list[str] = []
    real = signatures.verify_bytes

    def counting(sig: str, data: bytes, key: PublicKey) -> None:
        verified.append(sig)
        real(sig, data, key)

    monkeypatch.setattr(signatures, "verify_bytes", counting)
    assert ingest.handle(UNIT.event, payload) == Duplicate(SITE, DEVICE, 1)  # staged
    chain.commit(NOW)
    assert ingest.handle(UNIT.event, payload) == Duplicate(SITE, DEVICE, 1)  # committed
    assert verified == []
    assert ingest.counts == {"Accepted": 1, "Duplicate": 2}
    second = event(2, prev=event_hash(event()), state="closed")
    assert isinstance(ingest.handle(UNIT.event, second.to_json()), Accepted)
    assert verified == [second.sig]  # a new event is verified as ever


def test_a_forged_copy_of_a_held_event_is_a_duplicate_that_marks_nothing(
    ingest: Ingest, chain: ChainBook
) -> None:
    genuine = event()
    assert isinstance(ingest.handle(UNIT.event, genuine.to_json()), Accepted)
    chain.commit(NOW)
    forged = event(key=ed25519.Ed25519PrivateKey.generate())  # the same body, another signature
    assert forged.sig != genuine.sig and event_hash(forged) == event_hash(genuine)
    assert ingest.handle(UNIT.event, forged.to_json()) == Duplicate(SITE, DEVICE, 1)
    assert chain.commit(NOW) == []
    assert chain.last_seq(DEVICE) == 1


def test_a_forged_event_at_a_held_seq_is_a_bad_signature_not_a_fork(
    ingest: Ingest, chain: ChainBook
) -> None:
    ingest.handle(UNIT.event, event(state="open").to_json())
    chain.commit(NOW)
    forged = event(state="closed", key=ed25519.Ed25519PrivateKey.generate())
    rejected(ingest.handle(UNIT.event, forged.to_json()), Reason.SIGNATURE)
    assert chain.commit(NOW) == []


def test_a_forged_new_event_is_not_staged_even_after_a_duplicate(
    ingest: Ingest, chain: ChainBook
) -> None:
    first = event(1)
    ingest.handle(UNIT.event, first.to_json())
    ingest.handle(UNIT.event, first.to_json())
    forged = event(2, prev=event_hash(first), key=ed25519.Ed25519PrivateKey.generate())
    rejected(ingest.handle(UNIT.event, forged.to_json()), Reason.SIGNATURE)
    assert chain.commit(NOW) == []
    assert chain.last_seq(DEVICE) == 1


def test_another_event_reusing_a_seq_is_a_fork(ingest: Ingest, chain: ChainBook) -> None:
    ingest.handle(UNIT.event, event(state="open").to_json())
    chain.commit(NOW)
    replay = event(state="closed", id="other")
    outcome = rejected(ingest.handle(UNIT.event, replay.to_json()), Reason.FORK)
    assert outcome.is_integrity
    assert (outcome.seq, outcome.event_id) == (1, "other")


def test_an_event_not_chained_to_its_predecessor_is_a_broken_chain(
    ingest: Ingest, chain: ChainBook
) -> None:
    ingest.handle(UNIT.event, event(1).to_json())
    chain.commit(NOW)
    outcome = ingest.handle(UNIT.event, event(2, prev="ab" * 32).to_json())
    assert rejected(outcome, Reason.CHAIN).is_integrity


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"\xff\xfe", b"{}", b"[" * 100_000, b'{"v": 1}', b"null"],
)
def test_bad_json_is_rejected_with_a_reason(ingest: Ingest, payload: bytes) -> None:
    for topic in (UNIT.event, UNIT.heartbeat, UNIT.status):
        outcome = rejected(ingest.handle(topic, payload), Reason.PAYLOAD)
        assert outcome.detail
        assert (outcome.site, outcome.device) == (SITE, DEVICE)
        assert not outcome.is_integrity


def test_a_payload_with_an_extra_field_is_rejected_naming_it(ingest: Ingest) -> None:
    data = json.loads(event().to_json())
    data["note"] = "hi"
    outcome = rejected(ingest.handle(UNIT.event, json.dumps(data).encode()), Reason.PAYLOAD)
    assert "note" in outcome.detail


@pytest.mark.parametrize(
    "topic",
    [
        "jaga/v1/+/pintu-1/event",
        "jaga/v1/gudang-3/pintu-1",
        "jaga/v1/gudang-3/arming",
        "jaga/v1/gudang-3/Pintu-1/event",
        "jaga/v1/gudang-3/pintu-1/alarm",
        "",
        "\x00",
    ],
)
def test_a_bad_topic_is_rejected_with_a_reason(ingest: Ingest, topic: str) -> None:
    outcome = rejected(ingest.handle(topic, event().to_json()), Reason.TOPIC)
    assert outcome.detail
    assert outcome.site is None


def test_a_channel_the_collector_does_not_store_is_rejected(ingest: Ingest) -> None:
    outcome = ingest.handle(UNIT.snapshot("ev1"), b"\xff\xd8jpeg")
    rejected(outcome, Reason.UNSUPPORTED)


def test_an_oversized_payload_is_rejected_before_parsing(ingest: Ingest) -> None:
    outcome = rejected(ingest.handle(UNIT.event, b" " * (MAX_PAYLOAD + 1)), Reason.TOO_LARGE)
    assert str(MAX_PAYLOAD + 1) in outcome.detail
    assert len(outcome.payload) == 1024


def test_a_heartbeat_is_accepted(ingest: Ingest) -> None:
    outcome = ingest.handle(UNIT.heartbeat, heartbeat())
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.message, Heartbeat)
    assert (outcome.site, outcome.device, outcome.digest) == (SITE, DEVICE, None)


def test_a_status_is_accepted(ingest: Ingest) -> None:
    payload = json.dumps(
        {"site": SITE, "device": DEVICE, "state": "offline", "boot_id": "boot-1"}
    ).encode()
    outcome = ingest.handle(UNIT.status, payload)
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.message, Status)
    assert outcome.message.state == "offline"


def test_outcomes_are_counted(ingest: Ingest) -> None:
    payload = event().to_json()
    ingest.handle(UNIT.event, payload)
    ingest.handle(UNIT.event, payload)
    ingest.handle(UNIT.event, b"junk")
    ingest.handle(UNIT.heartbeat, heartbeat())
    assert ingest.counts == {"Accepted": 2, "Duplicate": 1, Reason.PAYLOAD: 1}


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (UNIT.event, b"not json"),
        ("jaga/v1/+/x/event", b"\x00\xff" * 10),
        ("t" * 2000, b"x"),
        (UNIT.event, bytes(range(256)) * 100),  # 25,600 bytes, cut to fit
    ],
)
def test_a_rejection_makes_a_valid_dead_letter(ingest: Ingest, topic: str, payload: bytes) -> None:
    outcome = ingest.handle(topic, payload)
    assert isinstance(outcome, Rejected)
    letter = outcome.dead_letter(NOW)
    again = models.parse(DeadLetter, letter.to_json())
    assert again == letter
    assert letter.received_ts == NOW
    assert letter.payload_len == len(payload)
    assert letter.reason.startswith(f"{outcome.reason.value}: ")
    assert payload.startswith(base64.b64decode(letter.payload_b64))
    assert letter.topic == topic[:512]


def test_a_dead_letter_of_an_oversized_payload_is_valid(ingest: Ingest) -> None:
    big = b"{" * (MAX_PAYLOAD + 10)
    outcome = ingest.handle(UNIT.event, big)
    assert isinstance(outcome, Rejected)
    letter = outcome.dead_letter(NOW)
    assert models.parse(DeadLetter, letter.to_json()) == letter
    assert base64.b64decode(letter.payload_b64) == big[:1024]


def test_a_dead_letter_of_an_oversized_payload_reports_its_real_length(ingest: Ingest) -> None:
    big = b"{" * (MAX_PAYLOAD + 10)
    outcome = ingest.handle(UNIT.event, big)
    assert isinstance(outcome, Rejected)
    assert outcome.dead_letter(NOW).payload_len == len(big)


def mixed_batch(p256: ec.EllipticCurvePrivateKey) -> list[tuple[str, bytes]]:
    """A batch of everything: new, redelivered (held and in-batch), forged, forked, broken,
    out of order, a heartbeat and junk — events of two units, one signing with P-256."""
    other = DeviceTopics(SITE, "pintu-2")
    e1 = event(1)
    e2 = event(2, prev=event_hash(e1), state="closed")
    e3 = event(3, prev=event_hash(e2))
    forged = event(4, prev=event_hash(e3), key=ed25519.Ed25519PrivateKey.generate())
    fork = event(2, prev=event_hash(e1), state="held-open")
    broken = event(4, prev="ab" * 32)
    q1 = event(1, key=p256, device="pintu-2")
    q2 = event(2, prev=event_hash(q1), key=p256, device="pintu-2", state="closed")
    return [
        (UNIT.event, e1.to_json()),
        (UNIT.event, e3.to_json()),
        (UNIT.event, e1.to_json()),
        (UNIT.event, forged.to_json()),
        (other.event, q2.to_json()),
        (UNIT.heartbeat, heartbeat()),
        (UNIT.event, e2.to_json()),
        (UNIT.event, fork.to_json()),
        (UNIT.event, b"junk"),
        (UNIT.event, broken.to_json()),
        (other.event, q1.to_json()),
        (UNIT.event, e3.to_json()),
    ]


def test_a_batch_through_the_signature_pool_ends_as_one_message_at_a_time(
    tmp_path: Path,
) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    known: dict[tuple[str, str], list[PublicKey]] = {
        (SITE, DEVICE): [KEY.public_key()],
        (SITE, "pintu-2"): [ed25519.Ed25519PrivateKey.generate().public_key(), p256.public_key()],
    }
    batch = mixed_batch(p256)
    pool = signatures.SignaturePool(2, min_batch=1)
    try:
        for round_ in range(2):  # then all over again: a redelivery of the whole batch
            one = Ingest(Keys(known), ChainBook(tmp_path / f"one{round_}.sqlite3"))
            alone = [one.handle(t, p) for t, p in batch]
            together = Ingest(Keys(known), ChainBook(tmp_path / f"all{round_}.sqlite3"))
            pooled = together.handle_batch(batch, pool)
            assert pooled == alone
            assert together.counts == one.counts
            assert together.chain.commit(NOW) == one.chain.commit(NOW)
            assert together.handle_batch(batch, pool) == [one.handle(t, p) for t, p in batch]
    finally:
        pool.close()
    assert pool.pooled > 0 and pool.failures == 0
    kinds = [type(o).__name__ if not isinstance(o, Rejected) else o.reason for o in alone]
    assert kinds == [
        "Accepted",
        "Accepted",
        "Duplicate",
        Reason.SIGNATURE,
        "Accepted",
        "Accepted",
        "Accepted",
        Reason.FORK,
        Reason.PAYLOAD,
        Reason.CHAIN,
        "Accepted",
        "Duplicate",
    ]


def test_a_failing_signature_pool_leaves_the_batch_checked_in_process(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = signatures.SignaturePool(1, min_batch=1)

    def broken(*_: object) -> object:
        raise RuntimeError("worker died")

    monkeypatch.setattr(signatures.ProcessPoolExecutor, "submit", broken)
    forged = event(2, prev=event_hash(event()), key=ed25519.Ed25519PrivateKey.generate())
    out = ingest.handle_batch(
        [(UNIT.event, event().to_json()), (UNIT.event, forged.to_json())], pool
    )
    pool.close()
    assert isinstance(out[0], Accepted)
    rejected(out[1], Reason.SIGNATURE)
    assert (pool.failures, pool.pooled) == (1, 0)
    monkeypatch.undo()
    third = event(3, prev=event_hash(forged), key=ed25519.Ed25519PrivateKey.generate())
    out = ingest.handle_batch([(UNIT.event, third.to_json())], pool)  # no new pool for a while
    rejected(out[0], Reason.SIGNATURE)
    assert (pool.failures, pool.pooled, pool._pool) == (1, 0, None)


def test_a_small_batch_is_checked_in_process(ingest: Ingest) -> None:
    pool = signatures.SignaturePool(1, min_batch=64)
    out = ingest.handle_batch([(UNIT.event, event().to_json())], pool)
    assert isinstance(out[0], Accepted)
    assert pool.pooled == 0 and pool._pool is None


# -- event times: a unit cannot overwrite its own stored events ---------------------------------


def test_an_event_at_the_time_of_the_units_previous_one_is_refused_as_an_integrity_problem(
    ingest: Ingest, chain: ChainBook
) -> None:
    opened = event(1, state="open")
    assert isinstance(ingest.handle(UNIT.event, opened.to_json()), Accepted)
    chain.commit(NOW)
    # Same sensor, same time: in InfluxDB it would be the same point, `closed` replacing `open`.
    closed = event(2, prev=event_hash(opened), state="closed", ts=opened.ts)
    outcome = rejected(ingest.handle(UNIT.event, closed.to_json()), Reason.TIME)
    assert outcome.is_integrity
    assert (outcome.site, outcome.device, outcome.seq) == (SITE, DEVICE, 2)
    assert outcome.dead_letter(NOW).reason == (
        f"time-out-of-order: ts {opened.ts} of seq 2 is not after ts {opened.ts} of seq 1"
    )
    earlier = event(2, prev=event_hash(opened), state="closed", ts=opened.ts - 1)
    rejected(ingest.handle(UNIT.event, earlier.to_json()), Reason.TIME)
    assert chain.commit(NOW) == [] and chain.last_seq(DEVICE) == 1


def test_the_same_time_twice_in_one_batch_keeps_the_first_event_only(ingest: Ingest) -> None:
    opened = event(1, state="open")
    closed = event(2, prev=event_hash(opened), state="closed", ts=opened.ts)
    outcomes = ingest.handle_batch([(UNIT.event, opened.to_json()), (UNIT.event, closed.to_json())])
    assert isinstance(outcomes[0], Accepted)
    rejected(outcomes[1], Reason.TIME)


def test_a_redelivered_event_is_a_duplicate_not_a_time_violation(
    ingest: Ingest, chain: ChainBook
) -> None:
    first = event(1)
    second = event(2, prev=event_hash(first), state="closed")
    outcomes = ingest.handle_batch([(UNIT.event, e.to_json()) for e in (first, second, first)])
    assert [type(o) for o in outcomes] == [Accepted, Accepted, Duplicate]
    chain.commit(NOW)
    for ev in (first, second):
        assert ingest.handle(UNIT.event, ev.to_json()) == Duplicate(SITE, DEVICE, ev.seq)


def test_an_event_filling_a_gap_must_lie_between_its_neighbours_in_time(
    ingest: Ingest, chain: ChainBook
) -> None:
    first = event(1)
    fourth = event(4, prev="ab" * 32)  # seqs 2 and 3 are missing: a gap
    ingest.handle(UNIT.event, first.to_json())
    ingest.handle(UNIT.event, fourth.to_json())
    assert chain.commit(NOW) == [(DEVICE, 2, 3, "opened")]
    for ts in (first.ts, fourth.ts, fourth.ts + 10):
        late = event(2, prev=event_hash(first), state="closed", ts=ts)
        assert rejected(ingest.handle(UNIT.event, late.to_json()), Reason.TIME).is_integrity
    second = event(2, prev=event_hash(first), state="closed")
    assert isinstance(ingest.handle(UNIT.event, second.to_json()), Accepted)
    assert chain.commit(NOW) == [(DEVICE, 2, 2, "closed")]
