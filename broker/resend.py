"""When to ask a unit for events again: a lost tail or a gap that does not close by itself.

A broker that restarts or is killed can lose messages it had already acknowledged to the
unit (Mosquitto saves its queues only periodically, and 2.0 does not restore shared
subscriptions). The unit keeps delivered events for a while; the collector notices what
is missing from the heartbeat's last seq and from its own gaps, and asks for it. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ResendRequest:
    site: str
    device: str
    first_seq: int
    last_seq: int


@dataclass
class ResendPlanner:
    """Asks only for what stayed missing across two heartbeats, and not too often."""

    min_interval_ns: int = 5_000_000_000
    _suspect: dict[str, tuple[int, int]] = field(default_factory=dict)
    _asked: dict[str, int] = field(default_factory=dict)

    def on_heartbeat(
        self,
        site: str,
        device: str,
        unit_last_seq: int,
        stored_last_seq: int,
        gaps: list[tuple[int, int]],
        now_ns: int,
    ) -> list[ResendRequest]:
        missing = list(gaps)
        if unit_last_seq > stored_last_seq:
            missing.append((stored_last_seq + 1, unit_last_seq))
        if not missing:
            self._suspect.pop(device, None)
            return []
        first = min(a for a, _ in missing)
        last = max(b for _, b in missing)
        previous = self._suspect.get(device)
        self._suspect[device] = (first, last)
        if previous is None:
            return []  # events may simply be on their way: wait one more heartbeat
        first = max(first, previous[0])
        last = min(last, previous[1])
        if first > last:
            return []
        if now_ns - self._asked.get(device, -(10**30)) < self.min_interval_ns:
            return []
        self._asked[device] = now_ns
        return [ResendRequest(site, device, first, last)]
