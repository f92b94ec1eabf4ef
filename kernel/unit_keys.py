"""Units' public keys, cached, and looked at again when a unit's certificate folder changes.

The collector and the witness both verify every event against the keys of the unit's
certificates. Reading certificates per event would cost the hot path; keeping them forever
misses a renewal (a new key) or a newcomer. So a unit's folder is looked at again at most
every `every_s`, and its keys are read again only when the folder's certificates changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger("jaga.keys")

K = TypeVar("K")
Stamp = tuple[tuple[str, int], ...]


@dataclass
class _Entry(Generic[K]):
    keys: list[K]
    stamp: Stamp
    checked: float


class UnitKeyCache(Generic[K]):
    """`load(site, device)` reads a unit's keys from `folder(site, device)` (its device.crt
    and certs/*.crt); the result is kept until those files change."""

    def __init__(
        self,
        load: Callable[[str, str], list[K]],
        folder: Callable[[str, str], Path],
        *,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._folder = folder
        self.every_s = every_s
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry[K]] = {}
        self._lock = threading.Lock()

    def keys(self, site: str, device: str) -> list[K]:
        ident = (site, device)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(ident)
            if entry is not None and now - entry.checked < self.every_s:
                return entry.keys
            stamp = certificate_stamp(self._folder(site, device))
            if entry is not None and stamp == entry.stamp:
                entry.checked = now
                return entry.keys
            keys = self._load(site, device)
            if not keys:
                log.warning("no usable certificate for unit %s/%s", site, device)
            self._entries[ident] = _Entry(keys, stamp, now)
            return keys


def certificate_stamp(folder: Path) -> Stamp:
    """Names and modification times of a unit's certificates: changes when one is added."""
    stamp = []
    for path in (folder / "device.crt", *sorted((folder / "certs").glob("*.crt"))):
        try:
            stamp.append((path.name, path.stat().st_mtime_ns))
        except OSError:
            continue
    return tuple(stamp)
