"""ca/issued.toml, the CA's issued-certificate log, kept O(1) per certificate: one [[issued]]
table appended (and fsynced) per certificate; rewritten whole only when an entry changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

if TYPE_CHECKING:
    from provisioning.records import CaLog, IssuedCert


def revoked_count(log: CaLog) -> int:
    """Revocations are never undone: a change in this count means an entry changed."""
    return sum(1 for entry in log.issued if entry.revoked_at is not None)


def whole_log(entries: list[IssuedCert]) -> bytes:
    """The whole file: one [[issued]] table per entry (never an inline array, which cannot grow)."""
    return "".join(table(e.model_dump(mode="python", exclude_none=True)) for e in entries).encode()


def table(entry: dict[str, Any]) -> str:
    """One [[issued]] table (tomli_w writes short arrays of tables inline, which cannot grow)."""
    return "\n[[issued]]\n" + tomli_w.dumps(entry)


def append(path: Path, text: str) -> None:
    """Append one [[issued]] table and fsync it (a torn tail is reported as unreadable)."""
    with path.open("a", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def stamp(*paths: Path) -> tuple[tuple[int, int], ...]:
    """(mtime, size) of each file, (0, -1) when absent: the cache key of a read log."""
    found = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            found.append((0, -1))
        else:
            found.append((st.st_mtime_ns, st.st_size))
    return tuple(found)
