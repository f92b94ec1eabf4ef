"""The collector's picture stage, its evidence store and custody log, and its backlog: what a
hostile unit can make them hold, and what they keep for the units that behave.

No server here: the stage and the store are SQLite and files under tmp_path; the fault tests
(tests/faults/test_hostile_pictures.py) run the same against the real broker.
"""

from __future__ import annotations

import hashlib
import json
import queue
import time
from pathlib import Path

import pytest

from broker.collector.inbound import Inbound
from broker.collector.intake import Intake
from broker.collector.partials import PictureLimits
from broker.collector.pictures import Pictures
from broker.config import CollectorConfig
from broker.custody import CustodyLog
from broker.diskqueue import DiskQueue
from broker.evidence import EvidenceRefused, EvidenceVault
from broker.ingest import Reason
from broker.refs import EventRef, UnitRef
from protocol import topics
from protocol.snapshot import split

S = 1_000_000_000
SITE = "bangka-barat"
GOOD = EventRef(SITE, "gudang-01", "cam-1")
NOW = 1_800_000_000 * S


def chunks(event: EventRef, data: bytes, max_payload: int = 600) -> tuple[str, list[Inbound]]:
    sha = hashlib.sha256(data).hexdigest()
    topic = topics.DeviceTopics(event.site, event.device).snapshot(event.event_id)
    parts = split(event.event_id, sha, "still", data, max_payload)
    return sha, [Inbound.arrived(topic, p, i + 1, 1, NOW) for i, p in enumerate(parts)]


@pytest.fixture
def store(tmp_path: Path) -> EvidenceVault:
    return EvidenceVault(tmp_path / "evidence", min_free_bytes=0)


def stage(tmp_path: Path, store: EvidenceVault, **limits: float) -> Pictures:
    return Pictures(tmp_path / "pictures.sqlite3", store, PictureLimits(**limits))  # type: ignore[arg-type]


def test_chunks_are_kept_durably_so_a_picture_completes_across_a_restart(
    tmp_path: Path, store: EvidenceVault
) -> None:
    data = bytes(range(256)) * 10
    sha, msgs = chunks(GOOD, data)
    store.vouch(GOOD, (sha,), 7)
    first = stage(tmp_path, store)
    assert first.keep(msgs[:2], NOW).stored == []
    first.close()  # the collector stops: the first two chunks were acknowledged already
    again = stage(tmp_path, store)
    out = again.keep(msgs[2:], NOW)
    assert [p.sha256 for p in out.stored] == [sha]
    assert store.path(sha).read_bytes() == data
    assert again.held(GOOD.unit) == (0, 0)


def test_a_unit_that_starts_pictures_it_never_finishes_holds_a_bounded_amount(
    tmp_path: Path, store: EvidenceVault
) -> None:
    pictures = stage(tmp_path, store, unit_partials=8)
    rogue = EventRef(SITE, "gudang-02", "x")
    for i in range(2000):
        _, msgs = chunks(EventRef(SITE, "gudang-02", f"h{i}"), bytes([i % 251]) * 3000)
        pictures.keep(msgs[:1], NOW + i)
    held, _ = pictures.held(rogue.unit)
    assert held == 8 and pictures.dropped == 2000 - 8
    data = b"good" * 500  # the good unit's picture is untouched by all that
    sha, msgs = chunks(GOOD, data)
    store.vouch(GOOD, (sha,), 3)
    assert [p.sha256 for p in pictures.keep(msgs, NOW).stored] == [sha]


def test_half_done_pictures_are_given_up_when_their_time_is_up_without_another_chunk(
    tmp_path: Path, store: EvidenceVault
) -> None:
    pictures = stage(tmp_path, store, partial_timeout_s=120)
    _, msgs = chunks(GOOD, b"z" * 3000)
    pictures.keep(msgs[:1], NOW)
    assert pictures.sweep(NOW + 119 * S) == 0
    assert pictures.sweep(NOW + 121 * S) == 1
    assert pictures.held(GOOD.unit) == (0, 0)


def test_the_heaviest_unit_gives_way_when_all_half_done_pictures_reach_their_bound(
    tmp_path: Path, store: EvidenceVault
) -> None:
    pictures = stage(tmp_path, store, partial_bytes=20_000, unit_partial_bytes=1_000_000)
    _, good = chunks(GOOD, b"g" * 3000)
    pictures.keep(good[:1], NOW)
    for i in range(60):
        _, msgs = chunks(EventRef(SITE, "gudang-02", f"h{i}"), bytes([i]) * 3000)
        pictures.keep(msgs[:1], NOW + i + 1)
    assert pictures.held(GOOD.unit)[0] == 1  # the good unit's one picture stays
    assert pictures.partial_bytes <= 20_000


def test_a_picture_before_its_event_waits_and_is_kept_once_the_event_vouches_for_it(
    tmp_path: Path, store: EvidenceVault
) -> None:
    pictures = stage(tmp_path, store)
    data = b"early" * 400
    sha, msgs = chunks(GOOD, data)
    assert pictures.keep(msgs, NOW).stored == []
    assert not store.has(sha)  # nothing unvouched enters the store
    store.vouch(GOOD, (sha,), 9)
    out = pictures.on_vouched([GOOD], NOW)
    assert [p.sha256 for p in out.stored] == [sha] and store.has(sha)


def test_a_unit_cannot_attach_pictures_to_another_units_event_by_using_its_id(
    tmp_path: Path, store: EvidenceVault
) -> None:
    pictures = stage(tmp_path, store)
    real = b"real" * 300
    real_sha, _ = chunks(GOOD, real)
    store.vouch(GOOD, (real_sha,), 4)
    # gudang-09 of another site signs an event with the same id and its own picture hash.
    other = EventRef("other-site", "gudang-09", GOOD.event_id)
    fake = b"fake" * 300
    fake_sha, fake_msgs = chunks(other, fake)
    store.vouch(other, (fake_sha,), 1)
    # and sends a picture on GOOD's event id under its own topic: vouched for its own event
    pictures.keep(fake_msgs, NOW)
    assert store.vouched(GOOD, fake_sha) is False
    assert [c["device"] for c in store.custody(event_id=GOOD.event_id, site=SITE)] == []
    # a picture claiming GOOD's event from GOOD's topic but not among its hashes is refused
    _, wrong = chunks(GOOD, b"wrong" * 300)
    out = pictures.keep(wrong, NOW)
    assert [r.reason for _, r in out.rejected] == [Reason.NOT_VOUCHED]


def test_a_full_disk_or_quota_refuses_the_picture_and_says_which(tmp_path: Path) -> None:
    store = EvidenceVault(tmp_path / "ev", unit_max_bytes=5000, min_free_bytes=0)
    store.put(b"a" * 4000, GOOD)
    with pytest.raises(EvidenceRefused) as quota:
        store.put(b"b" * 4000, GOOD)
    assert not quota.value.disk_full and "evidence_unit_max_mb" in str(quota.value)
    other = EventRef(SITE, "gudang-02", "e")
    store.put(b"c" * 4000, other)  # another unit's quota is its own
    full = EvidenceVault(tmp_path / "ev2", min_free_bytes=1 << 62)
    with pytest.raises(EvidenceRefused) as disk:
        full.put(b"d" * 10, GOOD)
    assert disk.value.disk_full and "free on the disk" in str(disk.value)


def test_the_custody_log_skips_a_torn_line_and_the_next_entry_starts_on_its_own(
    tmp_path: Path,
) -> None:
    store = EvidenceVault(tmp_path / "ev", min_free_bytes=0)
    sha = store.put(b"one" * 100, GOOD)
    store.close()
    with (tmp_path / "ev" / "custody.jsonl").open("a") as fh:
        fh.write('{"ts": 17, "sha256": "ab')  # the power went mid-line
    (tmp_path / "ev" / "custody.sqlite3").unlink()  # and the index is rebuilt from the log
    again = EvidenceVault(tmp_path / "ev", min_free_bytes=0)
    assert [c["sha256"] for c in again.custody(event_id=GOOD.event_id)] == [sha]
    sha2 = again.put(b"two" * 100, GOOD)
    again.close()
    third = EvidenceVault(tmp_path / "ev", min_free_bytes=0)
    assert [c["sha256"] for c in third.custody(site=SITE)] == [sha, sha2]
    assert third.torn_custody_lines == 0  # the torn tail was never indexed: nothing re-read
    lines = (tmp_path / "ev" / "custody.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["sha256"] == sha2  # a line of its own after the torn one


def test_custody_is_read_from_the_index_not_the_whole_log(tmp_path: Path) -> None:
    log = CustodyLog(tmp_path / "custody.jsonl", tmp_path / "custody.sqlite3")
    from broker.custody import Custody

    for i in range(3000):
        log.append(Custody(i, f"{i:064x}", SITE, "gudang-01", f"ev{i}", 10, "received"))
    log.close()
    # The log is the record: a stranger's lines appended to it are indexed at the next start.
    with (tmp_path / "custody.jsonl").open("a") as fh:
        fh.write(Custody(9, "f" * 64, SITE, "gudang-02", "ev9", 1, "received").to_json() + "\n")
    again = CustodyLog(tmp_path / "custody.jsonl", tmp_path / "custody.sqlite3")
    assert [c["ts"] for c in again.lines(event_id="ev9")] == [9, 9]
    assert [c["event_id"] for c in again.lines(sha256=f"{2999:064x}")] == ["ev2999"]


def test_a_backlog_item_is_removed_and_counted_once(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.sqlite3", 1 << 20)
    q.put_many([("a", b"1", 1), ("b", b"2", 1)])
    items = q.peek(2)
    assert q.remove(items[:1]) == items[:1]
    assert q.remove(items[:1]) == []  # the same item again: nothing removed, nothing counted
    assert len(q) == 1 and q.bytes == 1


def test_intake_hands_each_backlog_item_out_once(tmp_path: Path) -> None:
    config = CollectorConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "registry_dir": str(tmp_path),
            "unit_rate_per_s": 1,
            "unit_burst": 1,
            "influx": {"batch_max": 100},
        }
    )
    inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    intake = Intake(config, inbox)
    topic = topics.DeviceTopics(SITE, "gudang-02").heartbeat
    batch = [Inbound.arrived(topic, b"{}", i, 1, time.time_ns()) for i in range(1, 11)]
    admitted, deferred = intake.admit(batch)
    assert len(admitted) == 1 and len(deferred) == 9
    first = intake.top_up([])
    assert len(first) == 9 and all(m.backlog is not None for m in first)
    assert intake.top_up([]) == []  # not finished yet, but never handed out twice
    intake.done(first)
    intake.done(first)  # finishing twice removes nothing more
    assert len(intake.backlog) == 0 and not intake.backlog_waiting()
    assert intake._waiting == {}
    assert UnitRef(SITE, "gudang-02") not in intake._waiting
