"""File writes for the registry: atomic replace, refuse-to-overwrite and 0600 keys."""

from __future__ import annotations

import os
from pathlib import Path

from kernel.files import Durability, atomic_write
from provisioning.errors import ProvisioningError

PUBLIC_MODE = 0o644
PRIVATE_MODE = 0o600


def write_new(path: Path, data: bytes, *, mode: int = PUBLIC_MODE, what: str = "file") -> None:
    """Create path with data; refuse if it exists, so nothing issued is ever silently replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ProvisioningError(f"{what} {path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def replace(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Write path atomically (temp file + rename), so a crash never leaves half a record.

    FSYNC_FILE: the technician sees the command finish and can run it again; a power cut may
    bring back the previous record, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, durability=Durability.FSYNC_FILE, mode=mode)


def write_private_key(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write a private key readable by its owner only (0600)."""
    if overwrite:
        replace(path, data, mode=PRIVATE_MODE)
    else:
        write_new(path, data, mode=PRIVATE_MODE, what="key")
