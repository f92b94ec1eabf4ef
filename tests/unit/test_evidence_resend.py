"""Pictures lost after their PUBACK are asked for again: the unit's side (which camera events a
resend covers, the evidence store's claims and roles) and the collector's pure decision of
when an event's pictures count as missing and whom to ask."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.camera.evidence import Role, roles_by_size
from agent.camera.store import EvidenceStore as UnitStore
from agent.outbox import NewEvent, Outbox
from broker.evidence import EvidenceVault, Unfinished
from broker.evidence_gaps import EvidenceGaps, EvidencePlanner
from broker.refs import EventRef, UnitRef
from protocol import models
from protocol.models import Event, Kind
from protocol.signing import sign

S = 1_000_000_000
KEY = ed25519.Ed25519PrivateKey.generate()
TOPIC = "jaga/v1/gudang-3/pintu-1/event"


def pic(tag: str) -> tuple[str, bytes]:
    data = tag.encode() * 100
    return hashlib.sha256(data).hexdigest(), data


# the unit ----------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def append(box: Outbox, kind: Kind, state: str, hashes: tuple[str, ...] | None = None) -> Event:
    return box.append_event(
        NewEvent(
            "camera" if kind is Kind.CAMERA else "pintu",
            kind,
            state,
            1_700_000_000_000_000_000,
            42,
            True,
            snapshot_sha256=hashes,
        ),
        site="gudang-3",
        device="pintu-1",
        boot_id="boot-1",
        topic=TOPIC,
        signer=lambda body: sign(body, KEY),
    )


def test_a_resend_range_finds_exactly_the_camera_events_in_it_as_signed(outbox: Outbox) -> None:
    append(outbox, Kind.DOOR, "open")  # 1
    cam = append(outbox, Kind.CAMERA, "snapshot", (pic("a")[0], pic("b")[0]))  # 2
    append(outbox, Kind.DOOR, "closed")  # 3
    later = append(outbox, Kind.CAMERA, "snapshot", (pic("c")[0],))  # 4
    found = [models.parse(Event, raw) for raw in outbox.picture_events(1, 3)]
    assert found == [cam]
    assert [e.seq for e in (models.parse(Event, r) for r in outbox.picture_events(2, 4))] == [2, 4]
    assert outbox.picture_events(5, 9) == [] and later.seq == 4


def test_chunks_queued_again_are_pending_in_order_after_everything_else(outbox: Outbox) -> None:
    append(outbox, Kind.DOOR, "open")
    ids = outbox.append_messages([("t/1", b"one"), ("t/2", b"two")])
    assert ids == sorted(ids) and len(ids) == 2
    pending = outbox.pending()
    assert [p.payload for p in pending][-2:] == [b"one", b"two"]
    assert [p.id for p in pending][-2:] == ids and pending[-1].seq is None
    assert outbox.append_messages([]) == []


def test_a_claim_keeps_each_pictures_role_and_rows_and_a_requeue_holds_it_again(
    tmp_path: Path,
) -> None:
    store = UnitStore(tmp_path, max_bytes=10**6)
    (a, da), (b, db) = pic("a"), pic("b")
    assert store.put_file(a, da) and store.put_file(b, db)
    store.claim("ev1", [a, b], {a: [5, 6], b: [7]}, roles={a: "before", b: "still"})
    claim = store.claim_of("ev1", a)
    assert claim is not None and claim.rows == (5, 6) and claim.role == "before"
    assert not claim.delivered
    store.mark_delivered("ev1")
    assert not store.is_held(a)
    store.requeued("ev1", {a: [40, 41, 42]})
    again = store.claim_of("ev1", a)
    assert again is not None and again.rows == (40, 41, 42) and again.role == "before"
    assert store.is_held(a) and not again.delivered
    assert store.claim_of("ev1", pic("z")[0]) is None and store.claim_of("ev2", a) is None
    with pytest.raises(ValueError):
        store.claim("ev1", [a], roles={a: "sideways"})
    store.close()


def test_a_store_made_before_roles_were_recorded_opens_with_unknown_roles(tmp_path: Path) -> None:
    (tmp_path / "evidence").mkdir()
    db = sqlite3.connect(tmp_path / "evidence" / "index.sqlite3")
    db.executescript(
        "CREATE TABLE file (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL,"
        " stored_ns INTEGER NOT NULL);"
        "CREATE TABLE claim (event_id TEXT NOT NULL, sha256 TEXT NOT NULL,"
        " rows TEXT NOT NULL DEFAULT '', delivered_ns INTEGER, PRIMARY KEY (event_id, sha256));"
    )
    a, data = pic("a")
    (tmp_path / "evidence" / f"{a}.jpg").write_bytes(data)
    db.execute("INSERT INTO file VALUES (?, ?, 1)", (a, len(data)))
    db.execute("INSERT INTO claim VALUES ('ev1', ?, '3', 9)", (a,))
    db.commit()
    db.close()
    store = UnitStore(tmp_path, max_bytes=10**6)
    claim = store.claim_of("ev1", a)
    assert claim is not None and claim.role is None and claim.rows == (3,) and claim.delivered
    store.close()


def test_roles_of_older_pictures_are_guessed_from_the_one_full_resolution_still() -> None:
    small, big = 320 * 240, 960 * 540
    assert roles_by_size([small, small, big, small]) == [
        Role.BEFORE,
        Role.BEFORE,
        Role.STILL,
        Role.AFTER,
    ]
    assert roles_by_size([small, None, big]) == [Role.BEFORE, Role.BEFORE, Role.STILL]
    assert roles_by_size([small, small]) == [Role.BEFORE, Role.BEFORE]  # no still taken
    assert roles_by_size([big]) == [Role.BEFORE]


# the collector: its store ---------------------------------------------------------------------


@pytest.fixture
def evidence(tmp_path: Path) -> Iterator[EvidenceVault]:
    store = EvidenceVault(tmp_path / "evidence")
    yield store
    store.close()


def test_an_event_is_unfinished_until_every_picture_it_vouched_for_is_stored(
    evidence: EvidenceVault,
) -> None:
    (a, da), (b, db) = pic("a"), pic("b")
    evidence.vouch(EventRef("gudang-3", "pintu-1", "ev1"), (a, b), 7)
    evidence.put(da, EventRef("gudang-3", "pintu-1", "ev1"))
    [u] = evidence.unfinished(UnitRef("gudang-3", "pintu-1"))
    assert (u.event_id, u.site, u.device, u.seq, u.missing, u.pictures) == (
        "ev1",
        "gudang-3",
        "pintu-1",
        7,
        (b,),
        2,
    )
    assert evidence.unfinished(UnitRef("gudang-3", "another-unit")) == []
    evidence.asked(EventRef("gudang-3", "pintu-1", "ev1"), 123)
    [u] = evidence.unfinished()
    assert (u.asks, u.last_ask_ns) == (1, 123)
    assert evidence.missing_counts(u.vouched_ns + 1, max_asks=5) == (1, 1, 0)
    assert evidence.missing_counts(u.vouched_ns + 1, max_asks=1) == (1, 1, 1)
    assert evidence.missing_counts(u.vouched_ns, max_asks=5) == (0, 0, 0)  # too young
    evidence.put(db, EventRef("gudang-3", "pintu-1", "ev1"))
    assert evidence.unfinished() == []
    assert evidence.missing_counts(u.vouched_ns + 1, max_asks=5) == (0, 0, 0)


def test_after_a_restart_recent_events_are_checked_again_and_asks_are_remembered(
    tmp_path: Path,
) -> None:
    (a, da) = pic("a")
    store = EvidenceVault(tmp_path / "evidence")
    store.vouch(EventRef("gudang-3", "pintu-1", "ev1"), (a,), 3)
    store.put(da, EventRef("gudang-3", "pintu-1", "ev1"))
    store.asked(EventRef("gudang-3", "pintu-1", "ev1"), 5)
    assert store.unfinished() == []  # complete: not checked again while running
    store.close()
    store.path(a).unlink()  # the collector's copy is gone while it was stopped
    again = EvidenceVault(tmp_path / "evidence")
    [u] = again.unfinished(UnitRef("gudang-3", "pintu-1"))
    assert u.missing == (a,) and u.asks == 1 and u.last_ask_ns == 5
    again.close()


def test_an_event_vouched_without_its_seq_is_reported_but_never_asked_for(
    evidence: EvidenceVault,
) -> None:
    # Nothing to name in a resend: such an event can only be reported.
    evidence.vouch(EventRef("gudang-3", "pintu-1", "ev1"), (pic("a")[0],))
    [u] = evidence.unfinished()
    assert u.event_id == "ev1" and u.device == "pintu-1" and u.seq is None
    assert EvidencePlanner().given_up(u)
    assert EvidencePlanner(grace_ns=0).due([u], 4 * 10**18) == []
    assert evidence.missing_counts(4 * 10**18, max_asks=5) == (1, 1, 1)


# the collector: when to ask -------------------------------------------------------------------


def unfinished(
    event_id: str = "ev1",
    *,
    device: str = "pintu-1",
    vouched_ns: int = 0,
    asks: int = 0,
    last_ask_ns: int | None = None,
) -> Unfinished:
    return Unfinished(
        event_id, "gudang-3", device, 7, vouched_ns, (pic("a")[0],), asks, last_ask_ns, 3
    )


def test_pictures_are_not_missing_before_the_grace_time_nor_while_the_unit_is_uploading() -> None:
    planner = EvidencePlanner(grace_ns=120 * S)
    u = unfinished(vouched_ns=1000 * S)
    planner.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, 1010 * S)
    assert planner.due([u], 1119 * S) == []  # too soon after the event
    uploading = EvidencePlanner(grace_ns=120 * S)
    uploading.on_heartbeat(
        UnitRef("gudang-3", "pintu-1"), 0, 999 * S
    )  # an empty outbox before the event says nothing
    uploading.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 40, 1130 * S)
    assert uploading.due([u], 1200 * S) == []
    uploading.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, 1210 * S)
    assert len(uploading.due([u], 1210 * S)) == 1
    [ask] = planner.due([u], 1120 * S)
    assert (ask.site, ask.device, ask.seq, ask.event_id, ask.missing, ask.attempt) == (
        "gudang-3",
        "pintu-1",
        7,
        "ev1",
        1,
        1,
    )


def test_asks_back_off_need_a_fresh_empty_outbox_and_stop_after_max_asks() -> None:
    planner = EvidencePlanner(grace_ns=100 * S, max_asks=3)
    planner.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, 200 * S)
    # Asked once at 200 s: the next needs an empty outbox after the ask and 100 s.
    u = unfinished(asks=1, last_ask_ns=200 * S)
    assert planner.due([u], 400 * S) == []  # no empty outbox seen since the ask
    planner.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, 250 * S)
    assert planner.due([u], 299 * S) == []
    assert [a.attempt for a in planner.due([u], 300 * S)] == [2]
    # Asked twice, last at 300 s: the wait doubles to 200 s.
    u = unfinished(asks=2, last_ask_ns=300 * S)
    planner.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, 310 * S)
    assert planner.due([u], 499 * S) == []
    assert [a.attempt for a in planner.due([u], 500 * S)] == [3]
    # Three asks: given up, never asked again, counted as such.
    u = unfinished(asks=3, last_ask_ns=500 * S)
    planner.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, 510 * S)
    assert planner.given_up(u) and planner.due([u], 10_000 * S) == []
    # Lost once the last ask has had its time (400 s) to be answered.
    assert not planner.lost(u, 899 * S) and planner.lost(u, 900 * S)
    assert not planner.lost(unfinished(asks=2, last_ask_ns=0), 10_000 * S)


def test_each_unit_is_asked_for_a_bounded_number_of_events_per_round_oldest_first() -> None:
    planner = EvidencePlanner(grace_ns=10 * S, per_device=2)
    planner.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, 100 * S)
    planner.on_heartbeat(UnitRef("gudang-3", "pintu-2"), 0, 100 * S)
    events = [unfinished(f"ev{i}", vouched_ns=(50 - i) * S) for i in range(4)]
    events.append(unfinished("other", device="pintu-2", vouched_ns=60 * S))
    asks = planner.due(events, 100 * S)
    assert [a.event_id for a in asks] == ["ev3", "ev2", "other"]


def test_the_gap_watch_asks_through_the_store_and_a_restart_does_not_reset_the_attempts(
    tmp_path: Path,
) -> None:
    a, _ = pic("a")
    store = EvidenceVault(tmp_path / "evidence")
    store.vouch(EventRef("gudang-3", "pintu-1", "ev1"), (a,), 7)
    watch = EvidenceGaps(store, EvidencePlanner(grace_ns=1))
    now = 4 * 10**18
    [ask] = watch.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, now)
    assert (ask.seq, ask.attempt) == (7, 1)
    assert watch.on_heartbeat(UnitRef("gudang-3", "pintu-2"), 0, now) == []
    assert watch.refresh(now).events == 1
    store.close()
    store = EvidenceVault(tmp_path / "evidence")
    watch = EvidenceGaps(store, EvidencePlanner(grace_ns=1))
    [ask] = watch.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, now + 10)
    assert ask.attempt == 2
    summary = watch.refresh(now + 10)
    assert (summary.events, summary.pictures) == (1, 1)
    store.close()


def test_a_bounded_check_takes_events_known_to_miss_pictures_before_unchecked_ones(
    evidence: EvidenceVault,
) -> None:
    unit = UnitRef("gudang-3", "pintu-1")
    for i in range(3):
        evidence.vouch(EventRef("gudang-3", "pintu-1", f"ev{i}"), (pic(f"p{i}")[0],), i + 1)
    assert [u.event_id for u in evidence.unfinished(unit, limit=1)] == ["ev0"]
    assert [u.event_id for u in evidence.unfinished(unit, limit=2)] == ["ev0", "ev1"]
    evidence.vouch(EventRef("gudang-3", "pintu-1", "ev9"), (pic("p9")[0],), 9)  # not checked yet
    sha, data = pic("p0")
    evidence.put(data, EventRef("gudang-3", "pintu-1", "ev0"))
    # ev0 and ev1 were found missing, ev2 and ev9 never checked: ev0 (complete now) and ev1.
    assert [u.event_id for u in evidence.unfinished(unit, limit=2)] == ["ev1"]
    assert [u.event_id for u in evidence.unfinished(unit)] == ["ev1", "ev2", "ev9"]
    evidence.vouch(EventRef("gudang-3", "pintu-1", "ev10"), (pic("p10")[0],), 10)
    assert [u.event_id for u in evidence.unfinished(unit, limit=3)] == ["ev1", "ev2", "ev9"]
    assert sha not in {m for u in evidence.unfinished() for m in u.missing}


def test_a_picture_still_missing_after_the_last_ask_is_reported_lost_once(
    evidence: EvidenceVault, caplog: pytest.LogCaptureFixture
) -> None:
    evidence.vouch(EventRef("gudang-3", "pintu-1", "ev1"), (pic("a")[0],), 7)
    watch = EvidenceGaps(evidence, EvidencePlanner(grace_ns=10 * S, max_asks=1))
    now = 4 * 10**18
    assert len(watch.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, now)) == 1
    with caplog.at_level(logging.ERROR, logger="jaga.collector.evidence"):
        assert watch.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, now + 9 * S) == []
        assert not caplog.records  # the answer may still be on its way
        for t in (10, 20, 30):
            assert watch.on_heartbeat(UnitRef("gudang-3", "pintu-1"), 0, now + t * S) == []
    [lost] = caplog.records
    assert "1 of 1 pictures of event ev1 never arrived" in lost.getMessage()
    summary = watch.refresh(now + 30 * S)
    assert (summary.events, summary.pictures, summary.given_up) == (1, 1, 1)
    assert summary.line() == "1 events missing 1 pictures (1 given up)"
