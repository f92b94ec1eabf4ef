"""The certificate lifecycle into InfluxDB and the alerts (#19): the collector reads the lines
the enrolment server and jaga-provision append to the registry's enrolment/log.jsonl (the
collector already reads the registry for units' certificates), writes each as a `lifecycle`
point, and raises an alert for each refused token or renewal.

Why the collector reads a file rather than the enrolment server publishing: the enrolment
server has no MQTT identity and needs none (renewal must work while the broker is down), and
the log is already the fsynced record; the collector on the same server is the one writer of
points and the one alert engine. Crash-safe: the read offset (data_dir/lifecycle.offset) moves
only after the points are stored (or spooled) and the alerts emitted, so a crash repeats a
few lines: their points land on the same timestamps and tags (idempotent), their alerts are
latched per unit and reason (raised once, counted again).

Measurement (tags in brackets): lifecycle [site, device, event] at the record's time: by,
serial, reason, message. The log keeps whole seconds (provisioning/lifecycle.py), and InfluxDB
keeps one point per measurement, tags and time: two records of one unit and event in one
second (a token tried twice) would be one point. So a point's time is the record's own, to
the nanosecond it names, plus the line's byte offset in the log modulo 10^6 as nanoseconds
(under a millisecond): each line its own point, and a line read again after a crash lands on
the same one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from influxdb_client import Point, WritePrecision

from kernel.files import Durability, atomic_write

if TYPE_CHECKING:
    from broker.collector.alerting import AlertBridge
    from broker.collector.storage import Storage

log = logging.getLogger("jaga.collector")
REFUSED = {"enrol-refused": False, "renew-refused": True}
"""Refusal events and whether each is a renewal's."""
EVERY_S = 5.0
MAX_BYTES = 1 << 20
"""At most this much of the log per turn (a long backlog is read over several turns)."""


@dataclass
class Read:
    """What one turn found: points, refusals, and the offset to keep once they are stored."""

    points: list[Point] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    offset: int = 0


UNIQUE_NS = 10**6
"""A line's offset in the log, modulo this, is added to its time (ns): see the module's doc."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lifecycle_point(item: dict[str, Any], offset: int = 0) -> Point | None:
    """One log line (at byte `offset` of the log) as a point; None when it names no time or
    event."""
    try:
        at = datetime.fromisoformat(str(item["at"]))
    except (KeyError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # the log writes UTC
    point = Point("lifecycle").tag("event", str(item.get("event", "")))
    for tag in ("site", "device"):
        if isinstance(item.get(tag), str):
            point = point.tag(tag, item[tag])
    for name in ("by", "technician", "reason", "message", "how"):
        if item.get(name) is not None:
            point = point.field(name, str(item[name])[:500])
    for name in ("serial", "previous", "status"):
        if isinstance(item.get(name), int):
            point = point.field(name, item[name])
    point = point.field("count", 1)
    at_ns = (at - EPOCH) // timedelta(microseconds=1) * 1000  # exact: no float
    return point.time(at_ns + offset % UNIQUE_NS, WritePrecision.NS)


class LifecycleFeed:
    """Follows <registry_dir>/enrolment/log.jsonl from the offset it keeps."""

    def __init__(
        self,
        log_path: Path,
        offset_path: Path,
        sites: frozenset[str] | None = None,
        every_s: float = EVERY_S,
    ) -> None:
        self.log_path = log_path
        self.offset_path = offset_path
        self.sites = sites
        self.every_s = every_s
        self._next = 0.0

    @classmethod
    def for_registry(
        cls, registry_dir: Path, data_dir: Path, sites: frozenset[str] | None
    ) -> LifecycleFeed:
        return cls(registry_dir / "enrolment" / "log.jsonl", data_dir / "lifecycle.offset", sites)

    def read(self) -> Read:
        """New whole lines since the kept offset (a line still being written waits)."""
        offset = self._offset()
        try:
            with self.log_path.open("rb") as f:
                size = f.seek(0, 2)
                if size < offset:  # the log was replaced (a restored registry): read it anew
                    offset = 0
                f.seek(offset)
                data = f.read(MAX_BYTES)
        except FileNotFoundError:
            return Read(offset=offset)
        whole = data[: data.rfind(b"\n") + 1]
        found = Read(offset=offset + len(whole))
        at = offset
        for line in whole.splitlines(keepends=True):
            line_offset, at = at, at + len(line)
            try:
                item = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if not isinstance(item, dict):
                continue
            site = item.get("site")
            if self.sites is not None and site not in self.sites:
                continue
            point = lifecycle_point(item, line_offset)
            if point is not None:
                found.points.append(point)
            if item.get("event") in REFUSED and isinstance(site, str):
                found.refusals.append(item)
        return found

    def commit(self, offset: int) -> None:
        atomic_write(self.offset_path, f"{offset}\n".encode(), durability=Durability.FSYNC_FILE)

    def turn(self, storage: Storage, alerts: AlertBridge, stop: threading.Event) -> None:
        """Every every_s: store the new lines' points, raise their refusals, keep the offset.
        Never stops the collector: a failure is logged and tried again next turn."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        try:
            found = self.read()
            if found.offset == self._offset():
                return
            if found.points and not storage.store(found.points, stop):
                return  # stopping: read again after the restart
            for item in found.refusals:
                changes = alerts.engine.on_enrolment_refused(
                    str(item["site"]),
                    item["device"] if isinstance(item.get("device"), str) else None,
                    REFUSED[str(item["event"])],
                    str(item.get("reason") or item.get("status") or "refused"),
                    str(item.get("message", "")),
                    time.time_ns(),
                )
                alerts.emit(changes, stop)
            self.commit(found.offset)
        except Exception:  # an audit feed must never stop storage
            log.exception("lifecycle: cannot follow %s", self.log_path)

    def _offset(self) -> int:
        try:
            return int(self.offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0
