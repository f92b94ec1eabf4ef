"""The evidence store is bounded: delivered pictures make room oldest first, undelivered ones are
never deleted, and what cannot fit is refused out loud."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.camera.evidence import EvidenceFile, EvidenceSet, Role
from agent.camera.store import EvidenceStore

S = 1_000_000_000
KB = 1024


def pic(tag: str, size: int = 10 * KB) -> tuple[str, bytes]:
    data = (tag.encode() * size)[:size]
    return hashlib.sha256(data).hexdigest(), data


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EvidenceStore]:
    s = EvidenceStore(tmp_path, max_bytes=35 * KB)
    yield s
    s.close()


def stored(store: EvidenceStore, tag: str, *, event: str, delivered: bool) -> str:
    sha, data = pic(tag)
    assert store.put_file(sha, data)
    store.claim(event, [sha])
    if delivered:
        store.mark_delivered(event)
    return sha


def test_a_picture_is_written_whole_under_its_hash_with_no_temp_file_left(
    store: EvidenceStore, tmp_path: Path
) -> None:
    sha, data = pic("a")
    assert store.put_file(sha, data)
    assert (tmp_path / "evidence" / f"{sha}.jpg").read_bytes() == data
    assert store.read(sha) == data and sha in store
    assert not list((tmp_path / "evidence").glob(".*.tmp"))


def test_data_that_does_not_match_its_hash_is_rejected(store: EvidenceStore) -> None:
    sha, _ = pic("a")
    with pytest.raises(ValueError):
        store.put_file(sha, b"something else")


def test_when_full_the_oldest_delivered_pictures_go_first_and_undelivered_never(
    store: EvidenceStore,
) -> None:
    old = stored(store, "old", event="e1", delivered=True)
    held = stored(store, "held", event="e2", delivered=False)
    newer = stored(store, "newer", event="e3", delivered=True)
    sha, data = pic("next")
    assert store.put_file(sha, data)  # 40 KB > 35 KB: one delivered picture must go
    assert old not in store and newer in store and held in store
    sha2, data2 = pic("again")
    assert store.put_file(sha2, data2)
    assert newer not in store and held in store
    assert store.pressure().used_bytes <= store.max_bytes


def test_undelivered_pictures_are_kept_and_a_new_one_that_cannot_fit_is_refused(
    store: EvidenceStore,
) -> None:
    kept = [stored(store, t, event=f"e-{t}", delivered=False) for t in ("a", "b", "c")]
    sha, data = pic("d")
    assert store.put_file(sha, data) is False
    assert sha not in store and not store.path(sha).exists()
    assert all(k in store for k in kept)
    p = store.pressure()
    assert p.full and p.refused_files == 1
    assert p.held_bytes == p.used_bytes == 30 * KB
    # Once the broker has one of them, there is room again and the flag clears.
    store.mark_delivered("e-a")
    assert store.put_file(sha, data)
    assert not store.pressure().full


def test_a_stored_but_unclaimed_picture_is_held(store: EvidenceStore) -> None:
    sha, data = pic("fresh")
    store.put_file(sha, data)
    assert store.is_held(sha)
    store.claim("e1", [sha])
    assert store.is_held(sha)
    store.mark_delivered("e1", [sha])
    assert not store.is_held(sha)


def test_a_picture_shared_by_two_events_is_held_until_both_are_delivered(
    store: EvidenceStore,
) -> None:
    sha, data = pic("shared")
    store.put_file(sha, data)
    store.claim("e1", [sha])
    store.claim("e2", [sha])
    store.mark_delivered("e1")
    assert store.is_held(sha)
    store.mark_delivered("e2")
    assert not store.is_held(sha)


def test_under_pressure_a_set_keeps_the_still_and_the_frames_nearest_the_trigger(
    store: EvidenceStore,
) -> None:
    t = 100 * S

    def f(role: Role, tag: str, at: int) -> EvidenceFile:
        return EvidenceFile.of(role, pic(tag)[1], at)

    files = (
        f(Role.BEFORE, "b-far", t - 9 * S),
        f(Role.BEFORE, "b-near", t - 1 * S),
        f(Role.STILL, "still", t + 2 * S),
        f(Role.AFTER, "a-near", t + S // 2),
        f(Role.AFTER, "a-far", t + 3 * S),
    )
    result = store.put(EvidenceSet("door-1", t, files, still_taken=True))
    assert [x.role for x in result.kept] == [Role.BEFORE, Role.STILL, Role.AFTER]  # set order
    assert {x.jpeg[:6] for x in result.kept} == {b"b-near", b"stills", b"a-near"}
    assert {x.jpeg[:5] for x in result.refused} == {b"b-far", b"a-far"}
    assert result.hashes == tuple(x.sha256 for x in result.kept)


def test_settle_marks_delivered_once_every_outbox_row_of_a_picture_is_acknowledged(
    store: EvidenceStore,
) -> None:
    a, b = pic("a"), pic("b")
    for sha, data in (a, b):
        store.put_file(sha, data)
    store.claim("e1", [a[0], b[0]], rows={a[0]: [11, 12], b[0]: [13]})
    waiting = {12, 13}
    assert store.settle(lambda rows: [r for r in rows if r in waiting]) == 0
    waiting = {13}
    assert store.settle(lambda rows: [r for r in rows if r in waiting]) == 1
    assert not store.is_held(a[0]) and store.is_held(b[0])


def test_after_a_restart_unclaimed_pictures_are_orphans_and_go_before_delivered_ones(
    tmp_path: Path,
) -> None:
    first = EvidenceStore(tmp_path, max_bytes=35 * KB)
    delivered = stored(first, "delivered", event="e1", delivered=True)
    undelivered = stored(first, "undelivered", event="e2", delivered=False)
    orphan, data = pic("orphan")
    first.put_file(orphan, data)  # the process dies before claiming it
    first.close()
    second = EvidenceStore(tmp_path, max_bytes=35 * KB)
    assert not second.is_held(orphan) and second.is_held(undelivered)
    sha, data = pic("new")
    assert second.put_file(sha, data)
    assert orphan not in second and delivered in second and undelivered in second
    second.close()


def test_reopening_repairs_what_a_crash_left_behind(tmp_path: Path) -> None:
    s = EvidenceStore(tmp_path, max_bytes=100 * KB)
    gone = stored(s, "gone", event="e1", delivered=False)
    s.close()
    folder = tmp_path / "evidence"
    (folder / f"{gone}.jpg").unlink()  # indexed, but the file is gone
    (folder / f".{'0' * 64}.jpg.1.tmp").write_bytes(b"half a write")
    lost, lost_data = pic("renamed-but-not-indexed")
    (folder / f"{lost}.jpg").write_bytes(lost_data)
    bad, _ = pic("bitrot")
    (folder / f"{bad}.jpg").write_bytes(b"not what the name says")
    s = EvidenceStore(tmp_path, max_bytes=100 * KB)
    assert gone not in s and lost in s and bad not in s
    assert not (folder / f"{bad}.jpg").exists()
    assert not list(folder.glob(".*.tmp"))
    assert s.pressure().used_bytes == len(lost_data)
    s.close()
