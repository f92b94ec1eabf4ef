"""Panel codes typed in Home Assistant, matched to a person by the collector (REMOTE_CODE).

The codes are the people's PINs of `[alerts.people.<name>]` (#18: argon2 hashes, <name> a
login on the guard-post page or an operator certificate's name), so a person has one PIN
wherever they arm or disarm, and their duress PIN works from HA too (the engine is told which
it was, never handed the code). A code matches only a person who may act on the site: a
page account of an operator that sees it (never a guard's, as on the page), or an operator
identity that names it. The person recorded is
that person.

Each check costs an argon2 verify (~50 ms) per candidate, so it runs on the bridge's own
thread, never the collector's; after `max_failures` wrong codes for a site within
`lockout_s`, codes for it are refused unchecked until the oldest ages out.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from broker.alerts.config import PersonConfig
from broker.web.passwords import burn_time, verify_password


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whose code it is (account: the person's name in [alerts.people]; None: nobody)."""

    account: str | None
    reason: str = ""
    duress: bool = False
    """The person's duress PIN: the disarm goes on as usual and raises its silent alert."""


class PanelCodes:
    """Match a code to the person it belongs to among those who may act on the site."""

    def __init__(
        self,
        people: Mapping[str, PersonConfig],
        may_act: Callable[[str, str], bool],
        *,
        max_failures: int = 5,
        lockout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """may_act(name, site): whether that person may arm and disarm the site."""
        self.people = dict(people)
        self.may_act = may_act
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, site: str, code: str) -> Verdict:
        """The person whose PIN (or duress PIN) this is, among those who may act on site."""
        if self._locked(site):
            return Verdict(None, f"too many wrong codes for {site}: wait {self.lockout_s:.0f} s")
        if not code:
            return self._failed(site, "no code given")
        candidates = [
            (name, person)
            for name, person in sorted(self.people.items())
            if (person.pin_hash or person.duress_pin_hash) and self.may_act(name, site)
        ]
        if not candidates:
            burn_time(code)  # as slow as a real check: the answer tells nothing by its time
            return self._failed(site, f"nobody with a PIN may act on {site}")
        for name, person in candidates:
            # Both of a person's PINs are checked: the duress PIN answers no sooner (a watcher).
            pin = bool(person.pin_hash) and verify_password(person.pin_hash or "", code)
            duress = bool(person.duress_pin_hash) and verify_password(
                person.duress_pin_hash or "", code
            )
            if pin:
                return Verdict(name)
            if duress:
                return Verdict(name, duress=True)
        return self._failed(site, "wrong code")

    def _locked(self, site: str) -> bool:
        now = self._clock()
        with self._lock:
            seen = self._failures.get(site)
            while seen and seen[0] <= now - self.lockout_s:
                seen.popleft()
            return seen is not None and len(seen) >= self.max_failures

    def _failed(self, site: str, reason: str) -> Verdict:
        with self._lock:
            self._failures.setdefault(site, deque()).append(self._clock())
        return Verdict(None, reason)
