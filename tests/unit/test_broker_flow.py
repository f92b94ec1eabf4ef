"""The collector's flow control, pure parts: unit budgets, the disk queue, resend planning."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.diskqueue import DiskQueue, QueueFull
from broker.ratelimit import UnitBudget
from broker.resend import ResendPlanner, ResendRequest

S = 1_000_000_000


def test_a_unit_within_its_budget_always_passes_and_a_flood_is_held_back() -> None:
    budget = UnitBudget(rate=10, burst=20)
    assert all(budget.take("calm", i * S // 10) for i in range(100))  # 10/s for 10 s
    flood = [budget.take("loud", 0) for _ in range(100)]
    assert flood.count(True) == 20  # the burst, then nothing more at the same instant
    assert budget.take("loud", S // 10 + 1)  # a tenth of a second buys one more
    assert budget.take("calm", 10 * S)  # the flood did not touch the other unit


def test_the_disk_queue_keeps_order_and_contents_across_reopen_and_refuses_beyond_its_bound(
    tmp_path: Path,
) -> None:
    q = DiskQueue(tmp_path / "q.sqlite3", max_bytes=100)
    q.put_many([("a", b"x" * 40, 1), ("b", b"y" * 40, 2)])
    with pytest.raises(QueueFull):
        q.put("c", b"z" * 40)
    q.close()
    q = DiskQueue(tmp_path / "q.sqlite3", max_bytes=100)
    assert (len(q), q.bytes) == (2, 80)
    first, second = q.peek(5)
    assert (first.meta, first.body, second.meta, second.count) == ("a", b"x" * 40, "b", 2)
    q.remove([first])
    q.put("c", b"z" * 40)
    assert [i.meta for i in q.peek(5)] == ["b", "c"]


def test_resend_is_asked_only_for_what_stays_missing_across_two_heartbeats() -> None:
    plan = ResendPlanner(min_interval_ns=5 * S)
    # The unit says it made 12; we hold 10: seq 11-12 may still be on their way.
    assert plan.on_heartbeat("s", "d", 12, 10, [], 0) == []
    # Next heartbeat: it made 15, we still hold 10: 11-12 are lost, 13-15 may be in flight.
    assert plan.on_heartbeat("s", "d", 15, 10, [], 10 * S) == [ResendRequest("s", "d", 11, 12)]
    # Asked already: not again within the interval.
    assert plan.on_heartbeat("s", "d", 15, 10, [], 12 * S) == []
    # All arrived: nothing to ask, and the suspicion is forgotten.
    assert plan.on_heartbeat("s", "d", 15, 15, [], 30 * S) == []
    assert plan.on_heartbeat("s", "d", 15, 15, [(4, 5)], 40 * S) == []
    assert plan.on_heartbeat("s", "d", 15, 15, [(4, 5)], 50 * S) == [ResendRequest("s", "d", 4, 5)]
