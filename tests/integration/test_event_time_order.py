"""A unit cannot overwrite its own history: InfluxDB keys an event point by (series, time), so
a second event of the unit at a stored event's time would replace it. The collector refuses
it as an integrity problem — against real Mosquitto, InfluxDB and the collector process."""

from __future__ import annotations

import time

import pytest

from devstack.stack import Stack
from protocol.models import DeadLetter, Event, EventBody, Kind
from protocol.signing import GENESIS, event_hash, sign
from tests.integration.test_integrity import SITE, letters, publish, rows, running, unit_key
from tests.support import eventually

pytestmark = pytest.mark.integration
__all__ = ["letters", "running"]  # fixtures, shared with test_integrity

HOSTILE = "gudang-02"
"""A unit whose firmware is broken or subverted: it signs with its own, valid key."""


def at(stack: Stack, seq: int, prev: str, state: str, ts: int) -> Event:
    body = EventBody(
        id=f"time-{seq}-{state}",
        site=SITE,
        device=HOSTILE,
        sensor="pintu-utama",
        kind=Kind.DOOR,
        state=state,
        seq=seq,
        boot_id="hostile",
        ts=ts,
        mono_ns=seq,
        clock_synced=True,
        prev=prev,
    )
    return sign(body, unit_key(stack, HOSTILE))


def test_a_signed_event_at_the_time_of_a_stored_one_does_not_turn_open_into_closed(
    running: Stack, letters: list[DeadLetter]
) -> None:
    ts = time.time_ns()
    opened = at(running, 1, GENESIS, "open", ts)
    publish(running, HOSTILE, opened.to_json())
    eventually(lambda: rows(running, "event", HOSTILE))
    # The collector restarts in between: the stored event's time is kept in its chain book.
    assert running.collector is not None
    running.collector.restart(timeout=60)
    closed = at(running, 2, event_hash(opened), "closed", ts)
    publish(running, HOSTILE, closed.to_json())
    eventually(  # refused, or (before the fix) stored over the first
        lambda: (
            rows(running, "integrity", HOSTILE)
            or [r for r in rows(running, "event", HOSTILE) if r["state"] != "open"]
        )
    )
    [stored] = rows(running, "event", HOSTILE)
    assert (stored["seq"], stored["state"], stored["id"]) == (1, "open", opened.id)
    [violation] = rows(running, "integrity", HOSTILE)
    assert violation["reason"] == "time-out-of-order" and violation["seq"] == 2
    assert f"ts {ts} of seq 2 is not after ts {ts} of seq 1" in violation["detail"]
    letter = eventually(lambda: next((x for x in letters if "time-out" in x.reason), None))
    assert letter.topic.endswith(f"/{HOSTILE}/event")
    # The same unit, its next event a nanosecond later, is stored as ever.
    later = at(running, 2, event_hash(opened), "closed", ts + 1)
    publish(running, HOSTILE, later.to_json())
    eventually(lambda: len(rows(running, "event", HOSTILE)) == 2)
    states = [(r["seq"], r["state"]) for r in rows(running, "event", HOSTILE)]
    assert states == [(1, "open"), (2, "closed")]
