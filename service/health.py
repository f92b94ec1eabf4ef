"""Health checks for the watchdog: each takes `now` (monotonic seconds) and says what is wrong.

A check returns None when all is well, else one short sentence for STATUS= and the journal.
"Healthy" means "restarting would not help": a unit that cannot reach its broker is healthy
(it keeps storing events; restarting changes nothing), a main loop that stopped coming round, or a
link that is up but moves nothing, is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

Check = Callable[[float], str | None]


class LoopStall:
    """Unhealthy once the main loop has not come round for stall_s seconds."""

    def __init__(self, what: str, last_beat: Callable[[], float], stall_s: float) -> None:
        self.what = what
        self._last_beat = last_beat
        self.stall_s = stall_s

    def __call__(self, now: float) -> str | None:
        age = now - self._last_beat()
        if age >= self.stall_s:
            return f"{self.what} stalled for {age:.0f} s"
        return None


class ThreadAlive:
    """Unhealthy when no live thread has this name: a worker that died of an exception, or one
    that never started within `start_s` of the first check (the watchdog starts just before
    the service's run() starts its workers; the first check must not call that a death)."""

    def __init__(self, name: str, what: str, start_s: float = 10.0) -> None:
        self.name = name
        self.what = what
        self.start_s = start_s
        self._first_check: float | None = None
        self._seen = False

    def __call__(self, now: float) -> str | None:
        if any(t.name == self.name and t.is_alive() for t in threading.enumerate()):
            self._seen = True
            return None
        if self._first_check is None:
            self._first_check = now
        if self._seen:
            return f"{self.what} is not running"
        if now - self._first_check < self.start_s:
            return None
        return f"{self.what} never started"


@dataclass(frozen=True, slots=True)
class LinkState:
    """What a publisher shows from outside: its connection and its counters."""

    connected_since: float | None
    """None while disconnected; changes at every new connection."""
    waiting: int
    """Messages in the outbox not yet acknowledged."""
    published: int
    acked: int
    refused: int


class DrainProgress:
    """Unhealthy when the link is up, messages wait, and nothing moves for stall_s seconds.

    Moving is any change of the waiting count or of the published/acked/refused counters. A
    broker that refuses rows (they wait for the next connection) is answering, so once it has
    refused anything on this connection the check stays quiet. stall_s must outlast the MQTT
    keepalive, so that a broker that hangs with the connection open is noticed as a disconnect
    (healthy: events wait in the outbox) before it would look like a stuck drain.
    """

    def __init__(self, probe: Callable[[], LinkState], stall_s: float) -> None:
        self._probe = probe
        self.stall_s = stall_s
        self._connection: float | None = None
        self._refused_at_connect = 0
        self._last: tuple[int, int, int, int] | None = None
        self._moved_at = 0.0

    def __call__(self, now: float) -> str | None:
        state = self._probe()
        if state.connected_since is None:
            self._connection, self._last = None, None
            return None
        if state.connected_since != self._connection:
            self._connection = state.connected_since
            self._refused_at_connect = state.refused
            self._last = None
        seen = (state.waiting, state.published, state.acked, state.refused)
        if state.waiting == 0 or seen != self._last:
            self._last, self._moved_at = seen, now
            return None
        if state.refused > self._refused_at_connect:
            return None
        idle = now - self._moved_at
        if idle >= self.stall_s:
            return (
                f"outbox drain stuck: {state.waiting} messages waiting and none sent or "
                f"acknowledged for {idle:.0f} s while connected"
            )
        return None
