"""Wrong passwords pause further tries per account and per address: pure, `now` passed in.

An attempt counts as a failure from the moment it starts and is forgiven only once its
password proved right, so a burst of parallel guesses cannot slip past the limit while the
(deliberately slow) hashes are being checked.
"""

from __future__ import annotations

from collections import OrderedDict


class LoginThrottle:
    """At most `max_failures` failed (or unfinished) attempts per key within `window_s`; the
    next is refused until the oldest of them is `window_s` old. Keys are `user:<name>` and
    `ip:<address>`: guessing one account from many addresses, or many accounts from one
    address, both run into the pause."""

    def __init__(
        self, max_failures: int = 5, window_s: float = 300.0, max_keys: int = 10_000
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, keys: tuple[str, ...], now: float) -> float:
        """Seconds until these keys may try again; 0 when they may try now."""
        wait = 0.0
        for key in keys:
            recent = self._recent(key, now)
            if len(recent) >= self.max_failures:
                wait = max(wait, recent[-self.max_failures] + self.window_s - now)
        return max(0.0, wait)

    def failed(self, keys: tuple[str, ...], now: float) -> int:
        """Count an attempt against each key; the most failures any key now has."""
        worst = 0
        for key in keys:
            recent = [*self._recent(key, now), now]
            self._failures.pop(key, None)
            self._failures[key] = recent
            worst = max(worst, len(recent))
        while len(self._failures) > self.max_keys:  # a flood of addresses cannot eat memory
            self._failures.popitem(last=False)
        return worst

    def forgive(self, keys: tuple[str, ...], at: float) -> None:
        """The attempt counted at `at` had the right password: it is no failure."""
        for key in keys:
            failures = self._failures.get(key)
            if failures is not None and at in failures:
                failures.remove(at)

    def _recent(self, key: str, now: float) -> list[float]:
        return [t for t in self._failures.get(key, []) if now - t < self.window_s]
