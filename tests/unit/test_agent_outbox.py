"""The outbox numbers, chains, signs and keeps every event until the broker has it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agent.outbox import NewEvent, Outbox
from protocol import models
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, PrivateKey, event_hash, sign, verify

KEY = ed25519.Ed25519PrivateKey.generate()
TOPIC = "jaga/v1/gudang-3/pintu-1/event"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "agent" / "outbox.sqlite3")
    yield box
    box.close()


def new(state: str = "open", sensor: str = "pintu-utama", kind: Kind = Kind.DOOR) -> NewEvent:
    return NewEvent(
        sensor=sensor,
        kind=kind,
        state=state,
        ts=1_700_000_000_000_000_000,
        mono_ns=42,
        clock_synced=True,
    )


def append(box: Outbox, state: str = "open", key: PrivateKey = KEY) -> Event:
    return box.append_event(
        new(state),
        site="gudang-3",
        device="pintu-1",
        boot_id="boot-1",
        topic=TOPIC,
        signer=lambda body: sign(body, key),
    )


def test_a_new_outbox_starts_the_chain_at_genesis(outbox: Outbox) -> None:
    assert outbox.chain() == (0, GENESIS)
    assert outbox.depth() == 0
    assert outbox.pending() == []


def test_append_numbers_events_one_two_three(outbox: Outbox) -> None:
    events = [append(outbox, s) for s in ("open", "closed", "open")]
    assert [e.seq for e in events] == [1, 2, 3]
    assert outbox.chain()[0] == 3


def test_append_chains_each_event_to_the_previous_hash(outbox: Outbox) -> None:
    first, second, third = (append(outbox, s) for s in ("open", "closed", "open"))
    assert first.prev == GENESIS
    assert second.prev == event_hash(first)
    assert third.prev == event_hash(second)
    assert outbox.chain() == (3, event_hash(third))


@pytest.mark.parametrize(
    "key", [KEY, ec.generate_private_key(ec.SECP256R1())], ids=["ed25519", "p256"]
)
def test_append_stores_the_signed_event_that_verifies(outbox: Outbox, key: PrivateKey) -> None:
    event = append(outbox, key=key)
    (row,) = outbox.pending()
    stored = models.parse(Event, row.payload)
    assert stored == event
    verify(stored, key.public_key())
    assert (row.topic, row.qos, row.seq) == (TOPIC, 1, 1)
    assert (stored.site, stored.device, stored.boot_id) == ("gudang-3", "pintu-1", "boot-1")
    assert (stored.sensor, stored.kind, stored.state) == ("pintu-utama", Kind.DOOR, "open")


def test_each_event_gets_its_own_id(outbox: Outbox) -> None:
    assert append(outbox).id != append(outbox).id


def test_seq_and_chain_head_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    append(box)
    second = append(box, "closed")
    box.close()

    box = Outbox(path)
    try:
        assert box.chain() == (2, event_hash(second))
        third = append(box)
        assert third.seq == 3
        assert third.prev == event_hash(second)
        assert [p.seq for p in box.pending()] == [1, 2, 3]
    finally:
        box.close()


def test_an_event_appended_with_attachments_returns_the_rows_they_were_stored_in(
    outbox: Outbox,
) -> None:
    append(outbox)
    appended = outbox.append_event_with(
        new(),
        site="gudang-3",
        device="pintu-1",
        boot_id="boot-1",
        topic=TOPIC,
        signer=lambda body: sign(body, KEY),
        attachments=lambda event: [(f"snap/{event.id}", b"one"), (f"snap/{event.id}", b"two")],
    )
    append(outbox)  # a later event's rows are not the attachments'
    stored = {p.id: p for p in outbox.pending()}
    assert appended.event.seq == 2 and len(appended.rows) == 2
    assert [stored[r].payload for r in appended.rows] == [b"one", b"two"]
    assert all(stored[r].topic == f"snap/{appended.event.id}" for r in appended.rows)
    assert list(appended.rows) == outbox.attachment_rows(appended.event.seq)


def test_an_event_appended_without_attachments_has_no_rows_of_them(outbox: Outbox) -> None:
    appended = outbox.append_event_with(
        new(),
        site="gudang-3",
        device="pintu-1",
        boot_id="boot-1",
        topic=TOPIC,
        signer=lambda body: sign(body, KEY),
    )
    assert appended.rows == () and appended.event.seq == 1


def test_pending_is_oldest_first_and_respects_after_id_and_limit(outbox: Outbox) -> None:
    for _ in range(5):
        append(outbox)
    (picture,) = outbox.append_messages([("jaga/v1/gudang-3/pintu-1/snapshot/x", b"\xff\xd8jpeg")])
    everything = outbox.pending()
    assert [p.seq for p in everything] == [1, 2, 3, 4, 5, None]
    ids = [p.id for p in everything]
    assert ids == sorted(ids)
    assert ids[-1] == picture
    assert everything[-1].payload == b"\xff\xd8jpeg"
    assert [p.seq for p in outbox.pending(limit=2)] == [1, 2]
    assert [p.seq for p in outbox.pending(after_id=ids[1], limit=2)] == [3, 4]
    assert outbox.pending(after_id=ids[-1]) == []


def test_mark_delivered_removes_rows_from_pending_and_depth(outbox: Outbox) -> None:
    for _ in range(4):
        append(outbox)
    ids = [p.id for p in outbox.pending()]
    assert outbox.depth() == 4
    outbox.mark_delivered([ids[0], ids[2]])
    assert [p.seq for p in outbox.pending()] == [2, 4]
    assert outbox.depth() == 2
    outbox.mark_delivered([])
    assert outbox.depth() == 2


def test_delivered_events_do_not_affect_numbering(outbox: Outbox) -> None:
    append(outbox)
    outbox.mark_delivered(p.id for p in outbox.pending())
    assert append(outbox).seq == 2


def test_requeue_makes_delivered_events_pending_again(outbox: Outbox) -> None:
    for _ in range(5):
        append(outbox)
    outbox.mark_delivered(p.id for p in outbox.pending())
    assert outbox.depth() == 0
    assert outbox.requeue(2, 4) == 3
    assert [p.seq for p in outbox.pending()] == [2, 3, 4]
    assert outbox.depth() == 3


def test_requeue_of_unknown_seqs_changes_nothing(outbox: Outbox) -> None:
    append(outbox)
    outbox.mark_delivered(p.id for p in outbox.pending())
    assert outbox.requeue(7, 9) == 0
    assert outbox.depth() == 0


def test_a_signer_that_raises_leaves_nothing_stored(outbox: Outbox) -> None:
    first = append(outbox)

    def broken(body: EventBody) -> Event:
        raise RuntimeError("TPM unplugged")

    with pytest.raises(RuntimeError, match="TPM unplugged"):
        outbox.append_event(
            new(), site="gudang-3", device="pintu-1", boot_id="b", topic=TOPIC, signer=broken
        )
    assert outbox.chain() == (1, event_hash(first))
    assert outbox.depth() == 1
    second = append(outbox)
    assert (second.seq, second.prev) == (2, event_hash(first))


def test_a_state_that_does_not_fit_the_kind_is_refused_and_not_stored(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="not valid for kind door"):
        append(outbox, "tampered")
    assert outbox.chain() == (0, GENESIS)
    assert outbox.depth() == 0


def test_old_delivered_rows_are_pruned_but_undelivered_ones_never_are(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3", keep_delivered=3)
    try:
        for _ in range(499):
            append(box)
        ids = [p.id for p in box.pending(limit=1000)]
        box.mark_delivered(ids[:-10])  # seq 1..489 delivered, 490..499 still waiting
        append(box)  # the 500th append prunes
        assert [p.seq for p in box.pending(limit=1000)] == list(range(490, 501))
        assert box.requeue(1, 486) == 0  # pruned: too old to resend
        assert box.requeue(487, 489) == 3  # the newest three delivered are kept
        assert box.chain()[0] == 500
    finally:
        box.close()
