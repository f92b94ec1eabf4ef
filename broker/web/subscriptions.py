"""One open page's queue of updates: filled from the collector's threads, read in the page's
event loop. A page that falls behind is never fed a partial story: its queue is replaced by
one RESYNC and it gets the whole picture again."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

UpdateKind = Literal["site", "unit", "alert", "alert-gone", "arming"]


class Signal(Enum):
    RESYNC = "resync"  # the page fell behind: send it everything again
    CLOSE = "close"  # the server is stopping


@dataclass(frozen=True, slots=True)
class Update:
    """One changed piece of one site, ready to send as JSON."""

    site: str
    kind: UpdateKind
    data: dict[str, Any]


class Subscription:
    """One open page's queue of updates, filled from any thread, read in its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Update | Signal] = asyncio.Queue(maxsize)
        self.resyncs = 0

    def _offer(self, item: Update | Signal) -> None:
        """Runs in the page's loop. Full: forget the backlog, ask for a whole fresh picture."""
        if self.queue.full() or item is Signal.CLOSE:
            while not self.queue.empty():
                self.queue.get_nowait()
            if item is not Signal.CLOSE:
                item = Signal.RESYNC
                self.resyncs += 1
        self.queue.put_nowait(item)


class Pages:
    """Every open page's subscription; an update goes to each through its page's loop. Not
    locked: LiveState holds its lock around every call."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._subs: list[Subscription] = []

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscription:
        sub = Subscription(loop, self.queue_size)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def close_all(self) -> None:
        for sub in list(self._subs):
            self._deliver(sub, Signal.CLOSE)

    def send(self, item: Update) -> None:
        for sub in list(self._subs):
            self._deliver(sub, item)

    def _deliver(self, sub: Subscription, item: Update | Signal) -> None:
        try:
            sub.loop.call_soon_threadsafe(sub._offer, item)
        except RuntimeError:  # that page's loop is gone
            self._subs.remove(sub)
