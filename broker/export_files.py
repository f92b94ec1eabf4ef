"""Reading an evidence export's files: plain files inside the folder, never through a link,
never more than a limit, and the manifest validated; what a hostile folder says reaches the
terminal as one printable line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from broker.export_format import MANIFEST, Manifest

MANIFEST_MAX_BYTES = 32 * 1024 * 1024
"""Far above any real export (custody lines of its pictures); a bigger file is refused."""
PICTURE_MAX_BYTES = 64 * 1024 * 1024
SMALL_MAX_BYTES = 256 * 1024
"""Certificates, bodies, signatures and the subject list are far smaller."""
CHUNK = 1024 * 1024


class ExportError(Exception):
    """The export's manifest cannot be read; the message says why, in one line."""


def load_manifest(folder: Path) -> Manifest:
    """The export's manifest, validated; ExportError with one line saying what is wrong."""
    where = folder / MANIFEST
    try:
        data = read_plain(folder, MANIFEST, MANIFEST_MAX_BYTES)
    except FileNotFoundError:
        raise ExportError(
            f"{where}: not found; give a folder made by `jaga-collector evidence export`"
        ) from None
    except OSError as exc:
        raise ExportError(f"{where}: {os_reason(exc)}") from None
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise ExportError(f"{where}: {_summarise(exc)}") from None
    except (ValueError, RecursionError) as exc:
        raise ExportError(f"{where}: {one_line(str(exc))}") from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "the file"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    text = "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    return one_line(text) + " (not a manifest `evidence export` writes: damaged or altered)"


def one_line(text: str) -> str:
    """No line breaks or control characters from a hostile file reach the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:600]


def os_reason(exc: OSError) -> str:
    """Why a file of the export could not be read, as a problem line says it."""
    if exc.errno == errno.ELOOP:
        return "is a symbolic link; an export holds plain files only"
    if exc.errno == errno.ENOENT:
        return "missing"
    return exc.strerror or str(exc)


def read_plain(folder: Path, name: str, max_bytes: int) -> bytes:
    """A regular file inside folder (as open_plain names it), never through a symbolic link."""
    with open_plain(folder, name) as fd:
        data = bytearray()
        while len(data) <= max_bytes:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                return bytes(data)
            data += chunk
    size = f"{max_bytes // 2**20} MB" if max_bytes >= 2**20 else f"{max_bytes // 1024} KB"
    raise OSError(errno.EFBIG, f"larger than {size}")


@contextlib.contextmanager
def open_plain(folder: Path, name: str) -> Iterator[int]:
    """A descriptor of the regular file `name` (`file`, `sub/file` or, for a witness's,
    `witness/<name>/file`) inside folder; OSError for a symbolic link on the way (ELOOP), a
    FIFO or device (EINVAL)."""
    parts = name.split("/")
    if len(parts) > 3 or any(p in ("", ".", "..") for p in parts):
        raise OSError(errno.EINVAL, "not a file name inside the export")
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for sub in parts[:-1]:
            inner = os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = inner
        # O_NONBLOCK: a planted FIFO must not hang the check; it is refused just below.
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


def listing(folder: Path, sub: str) -> list[str]:
    """Names in a sub-folder (not dot-files, as a shell glob), sorted; none if it is missing
    or a link (verify_export says so once)."""
    path = folder / sub
    if path.is_symlink() or not path.is_dir():
        return []
    return sorted(n for n in os.listdir(path) if not n.startswith("."))
