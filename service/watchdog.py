"""WATCHDOG=1 at half of $WATCHDOG_USEC, sent only while every health check passes.

A thread wakes every half period, runs the checks, keeps STATUS= current and pings when all pass.
The main loop's own heartbeat is one of the checks, so a hung loop stops the pings within the
check's stall time and systemd restarts the service WatchdogSec= later; when the loop comes back
before that, the pings resume.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from service.health import Check
from service.notify import Notifier

log = logging.getLogger("jaga.service.watchdog")

UNHEALTHY = "UNHEALTHY, watchdog pings stopped"


def watchdog_period(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds systemd waits between pings, or None when it expects none from this process."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1_000_000


class Watchdog:
    """Keeps systemd informed: STATUS= when it changes, WATCHDOG=1 while healthy."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        period_s: float | None,
        checks: Sequence[Check],
        describe: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
        status_every_s: float = 2.0,
    ) -> None:
        self.notifier = notifier
        self.period_s = period_s
        self.checks = tuple(checks)
        self._describe = describe
        self._clock = clock
        self.interval_s = period_s / 2 if period_s else status_every_s
        self.problems: list[str] = []
        self.pings = 0
        self._last_status: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)

    def step(self, now: float | None = None) -> bool:
        """One round: check, report, ping if healthy; True when a ping went out."""
        now = self._clock() if now is None else now
        problems = [p for p in (self._run(check, now) for check in self.checks) if p]
        if problems and not self.problems:
            log.error("%s: %s", UNHEALTHY, "; ".join(problems))
        elif self.problems and not problems:
            log.warning("healthy again; watchdog pings resume")
        self.problems = problems
        try:
            text = self._describe()
        except Exception as exc:  # a status line must never stop the pings on its own
            text = f"status unavailable: {exc}"
        if problems:
            text = f"{UNHEALTHY}: {'; '.join(problems)} | {text}"
        if text != self._last_status:
            self.notifier.status(text)
            self._last_status = text
        if problems or not self.period_s:
            return False
        self.notifier.watchdog()
        self.pings += 1
        return True

    @staticmethod
    def _run(check: Check, now: float) -> str | None:
        try:
            return check(now)
        except Exception as exc:  # a check that fails to run is itself a failed check
            return f"health check failed: {exc}"

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval_s + 5)

    def _loop(self) -> None:
        while True:
            self.step()
            if self._stop.wait(self.interval_s):
                return
