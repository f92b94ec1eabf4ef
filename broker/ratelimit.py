"""Per-unit token buckets: a unit that floods is served after the others, never before. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UnitBudget:
    """`rate` messages per second per unit, with bursts up to `burst`."""

    rate: float
    burst: float
    _tokens: dict[str, float] = field(default_factory=dict)
    _stamp: dict[str, int] = field(default_factory=dict)

    def take(self, unit: str, now_ns: int) -> bool:
        """Spend one token of unit's budget if it has one."""
        last = self._stamp.get(unit, now_ns)
        tokens = min(
            self.burst, self._tokens.get(unit, self.burst) + (now_ns - last) * self.rate / 1e9
        )
        self._stamp[unit] = now_ns
        if tokens >= 1.0:
            self._tokens[unit] = tokens - 1.0
            return True
        self._tokens[unit] = tokens
        return False
