"""`audit quiet`'s verdict on a unit's signed chain around a window, without InfluxDB: quiet
only when the chain covers the window unbroken, checkpoints stay close, doors stay shut and
nothing moves while armed; otherwise each gap and each event is named."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from broker.audit_quiet import Window, judge, lines, parse_when
from protocol.models import Checkpoint, Event, EventBody, Kind
from protocol.signing import GENESIS, event_hash, sign

S = 1_000_000_000
T0 = 1_800_000_000 * S
KEY = ed25519.Ed25519PrivateKey.generate()
WIB = ZoneInfo("Asia/Jakarta")


class Unit:
    """Signs a chain the way the agent does, with times in seconds after T0."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.doors = {"pintu-utama": "closed"}
        self.boot = "boot-1"

    def add(self, at_s: float, kind: Kind, sensor: str, state: str, **extra: Any) -> Event:
        prev = event_hash(self.events[-1]) if self.events else GENESIS
        body = EventBody(
            id=f"e{len(self.events) + 1}",
            site="bangka-barat",
            device="gudang-01",
            sensor=sensor,
            kind=kind,
            state=state,
            seq=len(self.events) + 1,
            boot_id=self.boot,
            ts=T0 + int(at_s * S),
            mono_ns=int(at_s * S),
            clock_synced=True,
            prev=prev,
            **extra,
        )
        event = sign(body, KEY)
        self.events.append(event)
        return event

    def checkpoint(self, at_s: float, arming: str = "armed", interval_s: int = 60) -> Event:
        body = Checkpoint(interval_s=interval_s, uptime_s=int(at_s), sensors=dict(self.doors))
        return self.add(at_s, Kind.CHECKPOINT, "unit", arming, checkpoint=body)

    def door(self, at_s: float, state: str) -> Event:
        self.doors["pintu-utama"] = state
        return self.add(at_s, Kind.DOOR, "pintu-utama", state)


def window(start_s: float, end_s: float) -> Window:
    return Window("bangka-barat", "gudang-01", T0 + int(start_s * S), T0 + int(end_s * S))


def every_minute(unit: Unit, until_s: int) -> None:
    for at in range(0, until_s + 1, 60):
        unit.checkpoint(at)


def test_a_window_covered_by_close_checkpoints_with_doors_shut_is_quiet() -> None:
    unit = Unit()
    every_minute(unit, 600)
    report = judge(window(30, 570), unit.events, [])
    assert report.quiet, report
    assert (report.first_seq, report.last_seq, report.checkpoints) == (1, 11, 11)
    text = lines(report, WIB)
    assert text[0].startswith("quiet: bangka-barat/gudang-01 from 2027-01-15")
    assert "WIB" in text[0]
    assert "chain seq 1..11 unbroken, 11 checkpoints at most 0:01:00 apart" in text[1]


def test_a_door_opened_inside_the_window_is_named_with_its_time_and_seq() -> None:
    unit = Unit()
    every_minute(unit, 120)
    opened = unit.door(130, "open")
    unit.door(140, "closed")
    for at in range(180, 601, 60):
        unit.checkpoint(at)
    report = judge(window(30, 570), unit.events, [])
    assert not report.quiet
    assert report.gaps == []
    assert report.events == [f"door pintu-utama opened at {_utc(opened.ts)} (seq {opened.seq})"]
    assert lines(report)[0].startswith("not quiet: ")


def test_a_door_left_open_before_the_window_is_named_from_the_checkpoint_before_it() -> None:
    unit = Unit()
    unit.checkpoint(0)
    unit.door(10, "open")
    unit.checkpoint(60)
    unit.checkpoint(120)
    report = judge(window(90, 110), unit.events, [])
    assert len(report.events) == 1
    assert report.events[0].startswith("door pintu-utama was open when the window began")


def test_a_paused_unit_leaves_a_gap_between_checkpoints_that_is_named() -> None:
    unit = Unit()
    every_minute(unit, 180)
    for at in range(600, 901, 60):  # SIGSTOP from 180 s to 600 s
        unit.checkpoint(at)
    report = judge(window(30, 870), unit.events, [])
    assert not report.quiet
    assert len(report.gaps) == 1
    gap = report.gaps[0]
    assert gap.startswith("no checkpoint for 0:07:00 between")
    assert "(allowed 0:02:05)" in gap and "stopped, paused or cut off" in gap


def test_missing_seqs_and_a_broken_link_are_gaps() -> None:
    unit = Unit()
    every_minute(unit, 600)
    events = [e for e in unit.events if e.seq not in (4, 5)]
    report = judge(window(30, 570), events, [])
    assert any(g.startswith("seq 4..5 missing (2 events between") for g in report.gaps)
    forged = unit.events[6].model_copy(update={"prev": "ab" * 32})
    report = judge(window(30, 570), [*unit.events[:6], forged, *unit.events[7:]], [])
    assert "seq 7: does not link to seq 6" in report.gaps


def test_no_checkpoint_after_the_end_yet_is_not_quiet_and_says_when_to_ask_again() -> None:
    unit = Unit()
    every_minute(unit, 240)
    report = judge(window(30, 270), unit.events, [])
    assert not report.quiet
    assert report.gaps[0].startswith("no checkpoint at or after the window's end")
    assert "ask again then" in report.gaps[0]


def test_no_checkpoint_before_the_start_means_the_doors_then_are_not_vouched_for() -> None:
    unit = Unit()
    every_minute(unit, 600)
    report = judge(window(30, 570), unit.events[1:], [])
    assert any(g.startswith("no checkpoint at or before the window's start") for g in report.gaps)


def test_motion_breaks_the_quiet_only_while_armed() -> None:
    unit = Unit()
    every_minute(unit, 120)
    moved = unit.add(130, Kind.MOTION, "pir-gudang", "motion")
    unit.add(160, Kind.MOTION, "pir-gudang", "still")
    for at in range(180, 601, 60):
        unit.checkpoint(at)
    armed = judge(window(30, 570), unit.events, [(T0, True)])
    assert armed.events == [
        f"motion on pir-gudang at {_utc(moved.ts)} (seq {moved.seq}) while armed"
    ]
    disarmed = judge(window(30, 570), unit.events, [(T0, False)])
    assert disarmed.quiet and disarmed.notes[0].endswith("while disarmed")
    # no arming record: the arming the unit signed into its checkpoint ("armed" here)
    assert not judge(window(30, 570), unit.events, []).quiet


def test_events_that_failed_verification_are_named_and_break_the_quiet() -> None:
    unit = Unit()
    every_minute(unit, 600)
    report = judge(window(30, 570), unit.events, [], ["seq 12: signature does not verify"])
    assert report.gaps == ["seq 12: signature does not verify"]


def test_times_are_iso_8601_with_a_zone_or_the_sites_local_time() -> None:
    with_zone = parse_when("2026-11-27T22:00:00+07:00", WIB, "--from")
    assert parse_when("2026-11-27T22:00", WIB, "--from") == with_zone
    assert with_zone == int(dt.datetime(2026, 11, 27, 15, tzinfo=dt.UTC).timestamp()) * S
    with pytest.raises(ValueError, match="--to 'tonight': use ISO 8601"):
        parse_when("tonight", WIB, "--to")


def _utc(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / S, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
