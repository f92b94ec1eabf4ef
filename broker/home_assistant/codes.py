"""Panel codes typed in Home Assistant, matched to a person by the collector (REMOTE_CODE).

The codes are the people's PINs of `[alerts.people.<name>]` (#18: argon2 hashes, <name> a
login on the guard-post page or an operator certificate's name), so a person has one PIN
wherever they arm or disarm, and their duress PIN works from HA too (the engine is told which
it was, never handed the code). A code matches only a person who may act on the site: a
page account of an operator that sees it (never a guard's, as on the page), or an operator
identity that names it. The person recorded is
that person.

Each check costs an argon2 verify (~50 ms) per candidate, so it runs on the bridge's own
thread, never the collector's; `max_failures` wrong codes for a site within `lockout_s` pause
its keypad (codes refused, though a duress PIN still raises its silent alert) for `lockout_s`,
twice as long at each pause again (at most a day); a right code forgets them. The bridge
keeps them in its state file (a restart resumes the pause) and each pause raises an alert for
the control room (wiring.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.alerts.config import PersonConfig
from broker.web.passwords import burn_time, verify_password

MAX_PAUSE_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whose code it is (account: the person's name in [alerts.people]; None: nobody)."""

    account: str | None
    reason: str = ""
    duress: bool = False
    """The person's duress PIN: the disarm goes on as usual and raises its silent alert."""
    paused_s: float = 0.0
    """This wrong code paused the site's keypad for so long (an alert for the control room)."""
    duress_of: str | None = None
    """Refused (a paused keypad), yet the duress PIN of this person: the command stays refused
    and looks it, but their silent duress alert is raised all the same."""


class PanelCodes:
    """Match a code to the person it belongs to among those who may act on the site."""

    def __init__(
        self,
        people: Mapping[str, PersonConfig],
        may_act: Callable[[str, str], bool],
        *,
        max_failures: int = 5,
        lockout_s: float = 300.0,
        max_pause_s: float = MAX_PAUSE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """may_act(name, site): whether that person may arm and disarm the site. clock: the
        wall clock (the failures and pauses outlive a restart: `state` and `restore`)."""
        self.people = dict(people)
        self.may_act = may_act
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.max_pause_s = max(max_pause_s, lockout_s)
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._pauses: dict[str, tuple[int, float]] = {}
        """By site: how many pauses in a row (each twice as long as the one before), and when
        the last one ends; forgotten after a right code, or a whole max_pause_s after it."""
        self._lock = threading.Lock()

    def check(self, site: str, code: str) -> Verdict:
        """The person whose PIN (or duress PIN) this is, among those who may act on site."""
        if self._locked(site):
            # Refused whatever the code, but a duress PIN is still heard (checked like any
            # code, so it answers no sooner): someone forced to the keypad must be helped.
            paused = f"too many wrong codes for {site}: wait {self.lockout_s:.0f} s"
            found = self._match(site, code) if code else None
            duress_of = found.account if found is not None and found.duress else None
            return Verdict(None, paused, duress_of=duress_of)
        if not code:
            return self._failed(site, "no code given")
        found = self._match(site, code)
        if found is None:
            return self._failed(site, "wrong code")
        if found.account is None:
            return self._failed(site, found.reason)
        return found

    def _match(self, site: str, code: str) -> Verdict | None:
        """Whose PIN or duress PIN code is (account None: nobody may act; None: no match)."""
        candidates = [
            (name, person)
            for name, person in sorted(self.people.items())
            if (person.pin_hash or person.duress_pin_hash) and self.may_act(name, site)
        ]
        if not candidates:
            burn_time(code)  # as slow as a real check: the answer tells nothing by its time
            return Verdict(None, f"nobody with a PIN may act on {site}")
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
        return None

    def succeeded(self, site: str) -> None:
        """A right code for site: its wrong ones and its pauses are forgotten."""
        with self._lock:
            self._failures.pop(site, None)
            self._pauses.pop(site, None)

    def _locked(self, site: str) -> bool:
        now = self._clock()
        with self._lock:
            _, until = self._pauses.get(site, (0, float("-inf")))
            return now < until

    def _failed(self, site: str, reason: str) -> Verdict:
        """max_failures wrong codes within lockout_s pause the keypad: lockout_s the first
        time, twice as long each time again (at most max_pause_s)."""
        now = self._clock()
        with self._lock:
            seen = self._failures.setdefault(site, deque())
            seen.append(now)
            while seen and seen[0] <= now - self.lockout_s:
                seen.popleft()
            if len(seen) < self.max_failures:
                return Verdict(None, reason)
            seen.clear()
            strikes, until = self._pauses.get(site, (0, float("-inf")))
            if now - until > self.max_pause_s:
                strikes = 0  # a quiet while since the last pause: start short again
            pause = min(self.lockout_s * 2.0 ** min(strikes, 32), self.max_pause_s)
            self._pauses[site] = (strikes + 1, now + pause)
        return Verdict(None, reason, paused_s=pause)

    def state(self) -> dict[str, Any]:
        """What `restore` takes back after a restart (JSON): recent wrong codes, pauses."""
        with self._lock:
            return {
                "failures": {site: list(seen) for site, seen in self._failures.items() if seen},
                "pauses": {site: list(p) for site, p in self._pauses.items()},
            }

    def restore(self, raw: Any) -> None:
        """Take back `state` (a malformed part is skipped: the keypad starts unpaused)."""
        try:
            failures = {
                str(site): deque(float(t) for t in seen)
                for site, seen in dict(raw.get("failures", {})).items()
            }
            latest = self._clock() + self.max_pause_s  # a clock set back never pauses longer
            pauses = {
                str(site): (int(p[0]), min(float(p[1]), latest))
                for site, p in dict(raw.get("pauses", {})).items()
            }
        except (AttributeError, TypeError, ValueError, IndexError):
            return
        with self._lock:
            self._failures.update(failures)
            self._pauses.update(pauses)
