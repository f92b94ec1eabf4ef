"""Intake: batches off the inbox, each unit within its budget, the rest in a disk backlog.

A unit over its budget (or behind its own earlier messages) waits on disk, acknowledged,
and is served from spare room in later batches, in order: one flooding unit never delays
another unit's alarm. Each backlog item is handed out once (a watermark of ids), and the
count of waiting messages only falls by what was really removed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from broker.collector.inbound import Inbound
from broker.config import CollectorConfig
from broker.diskqueue import DiskQueue, Item, QueueFull
from broker.ratelimit import UnitBudget
from broker.refs import UnitRef

log = logging.getLogger("jaga.collector")

NOWHERE = UnitRef("", "")
"""The budget of messages whose topic names no unit (they are rejected, but budgeted too)."""


class Intake:
    def __init__(self, config: CollectorConfig, inbox: queue.SimpleQueue[Inbound]) -> None:
        self.config = config
        self.inbox = inbox
        self.backlog = DiskQueue(
            config.data_dir / "backlog.sqlite3", config.backlog_max_mb * 1024 * 1024
        )
        self.budget = UnitBudget(config.unit_rate_per_s, config.unit_burst)
        self._handed = 0
        """Backlog items up to this id are in a batch already: never handed out twice."""
        self._waiting: dict[UnitRef, int] = {}
        """Messages of each unit waiting in the backlog: its new ones queue behind them."""
        for item in self.backlog.peek(len(self.backlog)):
            unit = _unit(Inbound.from_backlog(item))
            self._waiting[unit] = self._waiting.get(unit, 0) + 1

    def take_batch(self, stop: threading.Event, *, wait: bool = True) -> list[Inbound]:
        """What is waiting in the inbox (up to batch_max), after at most a short wait."""
        cfg = self.config.influx
        try:  # with a backlog waiting (or a batch begun), never sit idle on an empty inbox
            if not wait:
                first = self.inbox.get_nowait()
            else:
                first = self.inbox.get(timeout=0.01 if self.backlog_waiting() else 0.5)
        except queue.Empty:
            return []
        batch = [first]
        # Take what is already waiting and write at once: a lone alarm does not wait for
        # company, and under load batches grow by themselves while a write is in flight.
        # flush_ms only bounds how long a batch may keep growing.
        deadline = time.monotonic() + cfg.flush_ms / 1000
        while len(batch) < cfg.batch_max and time.monotonic() < deadline:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def backlog_waiting(self) -> bool:
        return self.backlog.newest_id() > self._handed

    def top_up(self, batch: list[Inbound]) -> list[Inbound]:
        """Spare room in a batch goes to the backlog of units that were over their budget."""
        room = self.config.influx.batch_max // 2 - len(batch)
        if room <= 0 or not self.backlog_waiting():
            return batch
        items = self.backlog.peek(room, after_id=self._handed)
        if items:
            self._handed = items[-1].id
        return batch + [Inbound.from_backlog(i) for i in items]

    def admit(self, batch: list[Inbound]) -> tuple[list[Inbound], list[Inbound]]:
        """(go now, kept in the backlog): units within their budget go now; the rest are kept
        on disk before this returns, to be acknowledged by the caller."""
        now = time.time_ns()
        admitted: list[Inbound] = []
        deferred: list[Inbound] = []
        units: dict[str, tuple[UnitRef, str]] = {}  # by topic: a batch has few units
        for m in batch:
            known = units.get(m.topic)
            if known is None:
                unit = _unit(m)
                known = units[m.topic] = (unit, str(unit))
            unit, name = known
            if m.backlog is not None or (
                (not self._waiting or self._waiting.get(unit, 0) == 0)
                and self.budget.take(name, now)
            ):
                admitted.append(m)
            else:  # over budget, or behind its own earlier messages: keep the unit in order
                deferred.append(m)
        if not deferred:
            return admitted, []
        try:
            self.backlog.put_many([(m.topic, m.payload, 1) for m in deferred])
        except QueueFull as exc:
            log.error("backlog full (%s): serving the flooding unit in line", exc)
            return batch, []
        for m in deferred:
            unit = _unit(m)
            self._waiting[unit] = self._waiting.get(unit, 0) + 1
        log.warning("%d messages over their unit's budget wait in the backlog", len(deferred))
        return admitted, deferred

    def done(self, batch: list[Inbound]) -> None:
        """The backlog items among a finished batch leave the backlog."""
        items: list[Item] = [m.backlog for m in batch if m.backlog is not None]
        if not items:
            return
        removed = self.backlog.remove(items)
        for item in removed:
            unit = _unit(Inbound.from_backlog(item))
            left = self._waiting.get(unit, 0) - 1
            if left > 0:
                self._waiting[unit] = left
            else:
                self._waiting.pop(unit, None)

    def close(self) -> None:
        self.backlog.close()


def _unit(m: Inbound) -> UnitRef:
    return m.unit or NOWHERE
