from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kernel.files import Durability, atomic_write


@pytest.mark.parametrize("durability", list(Durability))
def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(
    tmp_path: Path, durability: Durability
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    atomic_write(path, b"new", durability=durability)
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_private_file_is_never_readable_by_others_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        atomic_write(tmp_path / "key", b"k", durability=Durability.FSYNC_FILE, mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "record"
    path.write_bytes(b"old")

    def no_room(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_room)
    with pytest.raises(OSError):
        atomic_write(path, b"new", durability=Durability.FSYNC_FILE)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["record"]


def test_file_and_dir_durability_syncs_the_folder_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "a", b"x", durability=Durability.FSYNC_FILE_AND_DIR)
    assert synced == [False, True]
    synced.clear()
    atomic_write(tmp_path / "b", b"x", durability=Durability.FSYNC_FILE)
    assert synced == [False]
    synced.clear()
    atomic_write(tmp_path / "c", b"x", durability=Durability.RENAME_ONLY)
    assert synced == []
