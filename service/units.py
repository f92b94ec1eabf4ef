"""What "up" and "healthy" mean for each Jaga service, and the notify wiring of their `run`.

Agent: ready once the config is loaded, the outbox open, the sensors read and the link started
(the broker may be away: the unit works alone). Healthy while its main loop comes round, the
outbox drain thread lives, and a connected link moves messages. Offline is healthy.

Collector: ready once subscribed. Healthy while its loop comes round; a loop waiting for InfluxDB
counts as coming round (collector.py refreshes its heartbeat between write attempts), because a
restart would not bring the store back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.health import Check, DrainProgress, LinkState, LoopStall, ThreadAlive
from service.notify import Notifier
from service.stall import stall_hook
from service.watchdog import Watchdog, watchdog_period

if TYPE_CHECKING:
    from agent.app import Agent
    from broker.collector.service import Collector

AGENT_STALL_FLOOR_S = 5.0
"""The agent's loop waits at most 1 s per turn; a burst of fsynced events may take a few."""
DRAIN_THREAD = "outbox-drain"
"""The thread agent.publisher.Publisher moves outbox rows on (its name= there)."""
COLLECTOR_STALL_MARGIN_S = 5.0
"""Beyond the InfluxDB writes one turn of the loop may wait for (STORE_WAITS x timeout_ms)."""
STORE_WAITS = 4
"""A batch and its gap records, each written with up to two attempts (broker.collector)."""
SPOOL_THREAD = "spool-drain"
"""The thread broker.collector.Collector.run replays the spool on (its name= there)."""


@dataclass
class Supervision:
    """Handed to the service's run loop: what to call on each turn (None when nothing)."""

    notifier: Notifier
    watchdog: Watchdog | None = None
    tick: Callable[[], None] | None = None


def _stall_s(period_s: float | None, floor_s: float) -> float:
    return max(floor_s, period_s / 2 if period_s else 0.0)


def agent_checks(agent: Agent, stall_s: float) -> list[Check]:
    """Main loop, drain thread, drain progress (allowing a hung broker its keepalive)."""
    publisher = agent.publisher

    def link() -> LinkState:
        s = publisher.stats
        return LinkState(
            s.connected_since if s.connected else None,
            agent.outbox.depth(),
            s.published,
            s.acked,
            s.refused,
        )

    keepalive = agent.config.broker.keepalive_s
    return [
        LoopStall("main loop", lambda: agent.loop_heartbeat, stall_s),
        ThreadAlive(DRAIN_THREAD, "outbox drain thread"),
        DrainProgress(link, max(stall_s, 2 * keepalive + 10)),
    ]


def agent_status(agent: Agent) -> str:
    s = agent.publisher.stats
    b = agent.config.broker
    link = (
        f"connected to {b.host}:{b.port}"
        if s.connected
        else f"offline ({s.last_error or 'connecting'})"
    )
    text = f"{link}; outbox {agent.outbox.depth()} waiting; {agent.events_stored} events stored"
    return text + ("; DISK FULL: new events are not stored" if agent.disk_full else "")


@contextmanager
def _supervised(
    notifier: Notifier,
    hook: Callable[[], None] | None,
    checks: list[Check],
    describe: Callable[[], str],
    period_s: float | None,
    stopping: str,
) -> Iterator[Supervision]:
    """READY=1 now, the health-gated watchdog while the body runs, STOPPING=1 after it."""
    dog = Watchdog(notifier, period_s=period_s, checks=checks, describe=describe)
    notifier.ready(describe())
    dog.start()
    try:
        yield Supervision(notifier, dog, hook)
    finally:
        dog.stop()
        notifier.stopping(stopping)
        notifier.close()


@contextmanager
def supervise_agent(agent: Agent, env: Mapping[str, str] | None = None) -> Iterator[Supervision]:
    """Around Agent.run: READY=1 on entry, STATUS=/WATCHDOG=1 meanwhile, STOPPING=1 on exit."""
    env = os.environ if env is None else env
    notifier = Notifier.from_env(env)
    hook = stall_hook(env)
    if not notifier.enabled:
        yield Supervision(notifier, tick=hook)
        return
    period = watchdog_period(env)
    checks = agent_checks(agent, _stall_s(period, AGENT_STALL_FLOOR_S))
    agent.loop_heartbeat = time.monotonic()  # the loop starts now, not at construction
    with _supervised(
        notifier,
        hook,
        checks,
        lambda: agent_status(agent),
        period,
        "stopping: giving the outbox a last chance to drain",
    ) as unit:
        yield unit


def collector_checks(collector: Collector, stall_s: float) -> list[Check]:
    """Main loop and the thread that replays the disk spool into InfluxDB."""
    return [
        LoopStall("collector loop", lambda: collector.loop_heartbeat, stall_s),
        ThreadAlive(SPOOL_THREAD, "spool replay thread"),
    ]


def collector_status(collector: Collector) -> str:
    s = collector.stats
    m = collector.config.mqtt
    link = "connected to" if s.connected else "disconnected from"
    text = (
        f"{link} broker {m.host}:{m.port}; {s.stored_events} events stored, "
        f"{s.duplicates} duplicates, {s.rejected} rejected"
    )
    if s.store_failures:
        text += f"; {s.store_failures} InfluxDB write failures, last: {s.last_error}"
    if collector.evidence_gaps.summary.events:
        text += f"; evidence: {collector.evidence_gaps.summary.line()}"
    return text


@contextmanager
def supervise_collector(
    collector: Collector, stop: threading.Event, env: Mapping[str, str] | None = None
) -> Iterator[Supervision]:
    """Around Collector.run: READY=1 once subscribed, then STATUS=/WATCHDOG=1, STOPPING=1."""
    env = os.environ if env is None else env
    notifier = Notifier.from_env(env)
    hook = stall_hook(env)
    if not notifier.enabled:
        yield Supervision(notifier, tick=hook)
        return
    m = collector.config.mqtt
    while not stop.is_set() and not collector.wait_subscribed(1.0):
        notifier.status(
            f"waiting for the broker at {m.host}:{m.port}: "
            f"{collector.stats.last_error or 'connecting and subscribing'}"
        )
    period = watchdog_period(env)
    floor = STORE_WAITS * collector.config.influx.timeout_ms / 1000 + COLLECTOR_STALL_MARGIN_S
    checks = collector_checks(collector, _stall_s(period, floor))
    collector.loop_heartbeat = time.monotonic()  # the loop starts now, not at construction
    with _supervised(
        notifier, hook, checks, lambda: collector_status(collector), period, "stopping"
    ) as unit:
        yield unit
