"""The stretch of chain an export carries: from the checkpoint before its events to the one
after when the unit emits them, else CONTEXT events each side; never across a gap."""

from __future__ import annotations

import pytest

from broker.export_chain import ChainError, stretch_around
from broker.export_format import ChainEnd
from protocol.models import Checkpoint, Event, EventBody, Kind
from protocol.signing import GENESIS, event_hash, sign
from provisioning import certs

KEY = certs.new_key()


def chain(length: int, checkpoints: frozenset[int] = frozenset()) -> list[Event]:
    out: list[Event] = []
    prev = GENESIS
    for seq in range(1, length + 1):
        shape: dict[str, object] = {"sensor": "pir", "kind": Kind.MOTION, "state": "motion"}
        if seq in checkpoints:
            point = Checkpoint(interval_s=300, uptime_s=seq, sensors={})
            shape = {
                "sensor": "unit",
                "kind": Kind.CHECKPOINT,
                "state": "armed",
                "checkpoint": point,
            }
        body = EventBody(id=f"e{seq}", site="s", device="d", seq=seq, boot_id="b", ts=seq,
                         mono_ns=seq, clock_synced=True, prev=prev, **shape)  # type: ignore[arg-type]  # fmt: skip
        out.append(sign(body, KEY))
        prev = event_hash(body)
    return out


def seqs(events: tuple[Event, ...]) -> list[int]:
    return [e.seq for e in events]


def test_without_checkpoints_it_carries_context_events_each_side() -> None:
    events = chain(300)
    got = stretch_around(events, [events[149]], context=50)
    assert seqs(got.events) == list(range(100, 201))
    assert (got.starts_at, got.ends_at) == (ChainEnd.LIMIT, ChainEnd.LIMIT)


def test_with_checkpoints_it_runs_from_the_one_before_to_the_one_after() -> None:
    events = chain(300, frozenset({20, 180, 260}))
    got = stretch_around(events, [events[99], events[101]], context=50)
    assert seqs(got.events) == list(range(20, 181))
    assert (got.starts_at, got.ends_at) == (ChainEnd.CHECKPOINT, ChainEnd.CHECKPOINT)


def test_it_stops_at_the_first_event_the_newest_and_a_gap() -> None:
    events = chain(30)
    got = stretch_around(events, [events[4]], context=50)
    assert seqs(got.events) == list(range(1, 31))
    assert (got.starts_at, got.ends_at) == (ChainEnd.GENESIS, ChainEnd.HEAD)
    holed = [e for e in events if e.seq not in (3, 20)]
    got = stretch_around(holed, [events[9]], context=50)
    assert seqs(got.events) == list(range(4, 20))
    assert (got.starts_at, got.ends_at) == (ChainEnd.GAP, ChainEnd.GAP)


def test_an_event_that_does_not_link_ends_the_stretch_like_a_gap() -> None:
    events = chain(10)
    astray = EventBody(**{**events[6].model_dump(exclude={"sig"}), "prev": "f" * 64})
    mixed = [*events[:6], sign(astray, KEY), *events[7:]]
    got = stretch_around(mixed, [events[2]], context=50)
    assert seqs(got.events) == list(range(1, 7)) and got.ends_at is ChainEnd.GAP


def test_the_export_s_own_events_must_be_one_unbroken_stretch() -> None:
    events = chain(10)
    with pytest.raises(ChainError, match="seq 5"):
        stretch_around([e for e in events if e.seq != 5], [events[2], events[7]])
