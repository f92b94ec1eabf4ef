"""Replacing a file atomically, with the durability each caller chooses by name."""

from __future__ import annotations

import contextlib
import enum
import os
from pathlib import Path


class Durability(enum.Enum):
    """How much of an atomic replace survives a power cut; each caller says why it needs its."""

    RENAME_ONLY = "rename-only"
    """Readers see the old or the new file, never half; after a power cut either may be there,
    or an empty file on some file systems. For files that are rebuilt or cheap to lose."""

    FSYNC_FILE = "fsync-file"
    """The new content is on disk before the rename; the rename itself may be lost in a power
    cut (the old file comes back, whole). For records that may roll back but must never tear."""

    FSYNC_FILE_AND_DIR = "fsync-file-and-dir"
    """Content and rename are both on disk when this returns: the caller may acknowledge it."""


def atomic_write(
    path: Path, data: bytes, *, durability: Durability, mode: int | None = None
) -> None:
    """Replace path with data so that no reader and no crash ever sees half of it.

    Args:
        durability: what a power cut may undo (see Durability); there is no default.
        mode: permissions of the new file, set before any byte is written (0o600: never
            briefly readable by others); None: the usual 0o666 less the umask.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as out:
            if mode is not None:
                os.fchmod(out.fileno(), mode)  # the umask must not widen or narrow it
            out.write(data)
            out.flush()
            if durability is not Durability.RENAME_ONLY:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durability is Durability.FSYNC_FILE_AND_DIR:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the names in folder `path` (a new file, a rename) survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
