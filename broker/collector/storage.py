"""Durable storage of points: InfluxDB, else the disk spool; and the spool's drain.

`store` returns only once the points are in InfluxDB or in the spool (fsync), so the caller
may acknowledge what produced them. A batch InfluxDB refuses as malformed is never rewritten
point by point (one bad point per batch would cap the collector near 500 points/s): a
"partial write" already kept the good points; otherwise the batch is split in halves until
the refused points are found, a few requests per bad point.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from broker.collector.stats import CollectorStats
from broker.config import CollectorConfig
from broker.diskqueue import DiskQueue, QueueFull
from broker.influx import InfluxWriter, Record, StoreUnavailable, WriteRefused, to_lines

log = logging.getLogger("jaga.collector")


class Storage:
    def __init__(
        self, config: CollectorConfig, stats: CollectorStats, writer: InfluxWriter | None = None
    ) -> None:
        self.config = config
        self.stats = stats
        self.writer = writer or InfluxWriter(config.influx, attempts=2)
        self.spool_path = config.data_dir / "spool.sqlite3"
        self.spool = DiskQueue(self.spool_path, config.spool_max_mb * 1024 * 1024)
        self._wake = threading.Event()
        self.on_wait: Callable[[], None] = lambda: None
        """Called while store() waits on purpose for room in a full spool (not a stall)."""

    def store(self, pts: Sequence[Record], stop: threading.Event) -> bool:
        """Durably keep pts; False only when stopping while InfluxDB and the spool are full."""
        if not pts:
            return True
        if not len(self.spool):
            try:
                self.writer.write(pts)
                return True
            except WriteRefused as exc:
                self._write_refused(pts, exc)
                return True
            except StoreUnavailable as exc:
                self.stats.store_failures += 1
                self.stats.last_error = str(exc)
                log.error("InfluxDB unavailable (%s): spooling batches to %s", exc, self.spool_path)
        lines = to_lines(pts)
        while True:
            try:
                self.spool.put("lines", lines, len(pts))
                self._wake.set()
                return True
            except QueueFull as exc:
                log.error("spool full (%s): holding messages unacknowledged in the broker", exc)
                self.on_wait()  # waiting on purpose: a restart won't help
                if stop.wait(1.0):
                    return False

    def _write_refused(self, pts: Sequence[Record], exc: Exception) -> None:
        """InfluxDB refused a batch as malformed: keep every point it accepts."""
        if "partial write" in str(exc):
            # InfluxDB kept every point it could parse; the message names what it dropped.
            self.stats.refused_points += 1
            log.error("InfluxDB kept a batch but refused part of it: %s", str(exc)[:500])
            return
        log.error("InfluxDB refused a batch of %d points (%s); finding the bad ones", len(pts), exc)
        self._bisect(list(pts))

    def _bisect(self, pts: list[Record]) -> None:
        if len(pts) == 1:
            self.stats.refused_points += 1
            line = pts[0] if isinstance(pts[0], str) else pts[0].to_line_protocol()
            log.error("point refused by InfluxDB: %s", line[:300])
            return
        half = len(pts) // 2
        for part in (pts[:half], pts[half:]):
            try:
                self.writer.write(part)
            except WriteRefused as exc:
                if "partial write" in str(exc):
                    self.stats.refused_points += 1
                    log.error("point(s) refused by InfluxDB: %s", str(exc)[:500])
                else:
                    self._bisect(part)
            except StoreUnavailable as exc:
                log.error("InfluxDB went away while finding refused points: %s", exc)
                self.spool.put("lines", to_lines(part), len(part))
                self._wake.set()

    def drain(self, stop: threading.Event) -> None:
        """Replay spooled batches into InfluxDB, oldest first, while the service runs."""
        writer = InfluxWriter(self.config.influx, attempts=1)
        try:
            while not stop.is_set():
                items = self.spool.peek(1)
                if not items:
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                item = items[0]
                try:
                    writer.write(item.body, item.count)
                except StoreUnavailable:
                    stop.wait(2.0)
                    continue
                except WriteRefused as exc:
                    log.error("spooled batch %d refused by InfluxDB (%s); dropped", item.id, exc)
                    self.stats.refused_points += item.count
                self.spool.remove([item])
                if not len(self.spool):
                    log.info("spool drained: InfluxDB has everything again")
        finally:
            writer.close()

    def close(self) -> None:
        self.writer.close()
        self.spool.close()
