"""The demo's three `audit quiet` windows, chosen from stored-event shapes like a real demo's
(devstack/quiet_demo.py), and how it judges the answers; no stack is started."""

from __future__ import annotations

import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import tomli_w

from broker.audit_quiet import SLACK_NS
from devstack.quiet_demo import (
    AUDIT_SLACK_S,
    CHECKPOINT_S,
    MIN_PAUSE_S,
    Ask,
    Night,
    Seen,
    choose,
    line,
    opening_window,
    pause_window,
    quiet_window,
    verdict,
)
from devstack.stack import Stack
from kernel.units import S

T0 = 1_790_000_000 * S
"""A whole second; the demo's units boot at T0 + 0.3 s."""
WIB = ZoneInfo("Asia/Jakarta")


def at(seconds: float) -> int:
    return T0 + int(seconds * S)


def unit(device: str, *events: tuple[float, str, str, str]) -> list[Seen]:
    return [Seen(device, kind, sensor, state, at(t)) for t, kind, sensor, state in events]


def checkpoints(device: str, first: float, last: float, every: float = 5.0) -> list[Seen]:
    out, t = [], first
    while t <= last:
        out.append(Seen(device, "checkpoint", "unit", "armed", at(t)))
        t += every
    return out


# A 40 s demo as stored (times in s after T0): armed at 6.2, gudang-02 paused 13.1..30.4.
ARMED = at(6.2)
GUDANG_01 = [
    *unit(
        "gudang-01",
        (0.3, "system", "system", "boot"),
        (0.3, "door", "pintu-utama", "closed"),
        (0.3, "tamper", "tamper", "normal"),
        (2.4, "door", "pintu-utama", "open"),
        (3.4, "motion", "lorong", "motion"),
        (4.1, "camera", "camera", "snapshot"),
        (8.4, "door", "pintu-utama", "closed"),
        (22.4, "door", "pintu-utama", "open"),
        (24.2, "camera", "camera", "snapshot"),
        (28.4, "door", "pintu-utama", "closed"),
    ),
    *checkpoints("gudang-01", 0.35, 39.4),
]
GUDANG_02 = [
    *unit(
        "gudang-02",
        (0.8, "door", "pintu-belakang", "closed"),
        (5.8, "door", "pintu-belakang", "open"),
        (6.8, "motion", "gudang", "motion"),
        (9.8, "door", "pintu-belakang", "closed"),
        (14.8, "door", "pintu-belakang", "open"),
        (34.0, "door", "pintu-belakang", "closed"),
    ),
    *checkpoints("gudang-02", 0.85, 10.9),
    *checkpoints("gudang-02", 30.5, 40.5),
]
POS_JAGA = [
    *unit(
        "pos-jaga-01",
        (0.9, "door", "pintu-pos", "closed"),
        (1.9, "patrol", "patroli", "checkin"),
        (4.9, "door", "pintu-pos", "open"),
        (7.9, "door", "pintu-pos", "closed"),
        (10.9, "motion", "halaman", "motion"),
        (12.9, "patrol", "patroli", "checkin"),
        (24.9, "door", "pintu-pos", "open"),
        (27.9, "door", "pintu-pos", "closed"),
        (30.9, "motion", "halaman", "motion"),
    ),
    *checkpoints("pos-jaga-01", 0.95, 39.95),
]
DEMO = [*GUDANG_01, *GUDANG_02, *POS_JAGA]


def test_the_quiet_window_is_the_longest_stretch_after_arming_with_every_door_shut() -> None:
    ask = quiet_window(DEMO, ARMED, skip=["gudang-02"])
    # gudang-01 from its door's close (8.4) to its next opening (22.4), half a second clear of
    # each, in whole seconds; pos-jaga-01's longest (10.9..24.9, a patrol check-in is no
    # disturbance) is as long, and the first found of equals stays.
    assert ask == Ask("gudang-01", at(9), at(21), "quiet")


def test_the_paused_unit_is_never_the_quiet_one() -> None:
    only_paused = quiet_window(GUDANG_02, ARMED, skip=["gudang-02"])
    assert only_paused is None


def test_a_stretch_with_a_door_open_or_checkpoints_too_far_apart_is_not_quiet() -> None:
    # gudang-02 unskipped: its 14.8..34.0 stretch has the door open, 9.8..14.8 has all doors
    # shut but its checkpoints (10.85, then 30.5) straddle the pause; after 34.0 it is quiet.
    ask = quiet_window(GUDANG_02, ARMED)
    assert ask == Ask("gudang-02", at(35), at(40), "quiet")
    no_tail = [e for e in GUDANG_02 if e.kind != "checkpoint" or e.ts_ns < at(35)]
    assert quiet_window(no_tail, ARMED) is None


def test_a_stretch_before_arming_is_not_chosen() -> None:
    # Armed late: nothing of gudang-01 after that but the open door and its tail.
    late = quiet_window(GUDANG_01, at(23.0))
    assert late == Ask("gudang-01", at(29), at(35), "quiet")  # its last checkpoint: 35.35


def test_a_quiet_window_needs_a_checkpoint_after_its_end() -> None:
    no_tail = [e for e in GUDANG_01 if e.kind != "checkpoint" or e.ts_ns < at(20)]
    ask = quiet_window(no_tail, ARMED)
    assert ask is not None and ask.end_ns <= at(15.35)
    assert quiet_window([e for e in no_tail if e.kind != "checkpoint"], ARMED) is None


def test_the_door_window_is_a_second_either_side_of_the_first_opening_after_arming() -> None:
    ask = opening_window(DEMO, ARMED)
    assert ask == Ask("gudang-01", at(21), at(23), "door", door="pintu-utama")
    assert ask.start_ns <= at(22.4) <= ask.end_ns


def test_the_door_window_falls_back_to_another_unit() -> None:
    # gudang-02's only opening after arming (14.8) lies between checkpoints the pause parted.
    assert opening_window(GUDANG_02, ARMED) is None
    ask = opening_window([*GUDANG_02, *POS_JAGA], ARMED)
    assert ask == Ask("pos-jaga-01", at(23), at(25), "door", door="pintu-pos")
    assert opening_window(POS_JAGA, at(40.0)) is None


def test_the_pause_window_is_the_whole_seconds_inside_the_pause() -> None:
    night = Night(armed_ns=ARMED, paused_ns=at(13.1), resumed_ns=at(30.4))
    assert pause_window(night) == Ask("gudang-02", at(14), at(30), "gap")
    assert pause_window(Night(paused_ns=at(13.1))) is None
    assert pause_window(Night(paused_ns=at(13.1), resumed_ns=at(13.9))) is None


def test_choose_asks_the_three_questions_of_a_demo() -> None:
    night = Night(armed_ns=ARMED, paused_ns=at(13.1), resumed_ns=at(30.4))
    asks = [a for _, a in choose(DEMO, night)]
    assert [(a.device, a.expect) for a in asks if a is not None] == [
        ("gudang-01", "quiet"),
        ("gudang-01", "door"),
        ("gudang-02", "gap"),
    ]


def test_the_pause_outlasts_what_the_audit_allows_between_two_checkpoints() -> None:
    assert AUDIT_SLACK_S * S == SLACK_NS
    assert MIN_PAUSE_S > 2 * CHECKPOINT_S + AUDIT_SLACK_S
    night = Night(paused_ns=at(13.1))
    assert not night.long_enough(at(13.1 + MIN_PAUSE_S - 0.1))
    assert night.long_enough(at(13.1 + MIN_PAUSE_S))
    assert not Night().long_enough(at(100))


QUIET_OUT = (
    "quiet: bangka-barat/gudang-01 from 2026-09-22 02:13:29 WIB to 2026-09-22 02:13:41 WIB\n"
    "  chain seq 9..14 unbroken, 4 checkpoints at most 0:00:05 apart (allowed 0:00:15), "
    "every door closed, no motion while armed\n"
)
DOOR_OUT = (
    "not quiet: bangka-barat/gudang-01 from 2026-09-22 02:13:41 WIB to ...\n"
    "  event: door pintu-utama opened at 2026-09-22 02:13:42 WIB (seq 13)\n"
)
GAP_OUT = (
    "not quiet: bangka-barat/gudang-02 from ...\n"
    "  gap: no checkpoint for 0:00:19 between 2026-09-22 02:41:06 WIB and 2026-09-22 "
    "02:41:26 WIB (allowed 0:00:15): the unit was stopped, paused or cut off\n"
    "  note: motion on gudang at 2026-09-22 02:41:07 WIB (seq 9) while disarmed\n"
)
QUIET = Ask("gudang-01", at(9), at(21), "quiet")
DOOR = Ask("gudang-01", at(21), at(23), "door", door="pintu-utama")
GAP = Ask("gudang-02", at(14), at(30), "gap")


@pytest.mark.parametrize(
    ("ask", "code", "out", "right", "summary"),
    [
        (QUIET, 0, QUIET_OUT, True, "quiet"),
        (DOOR, 1, DOOR_OUT, True, "door pintu-utama opened at 02:13:42 WIB (seq 13)"),
        (
            GAP,
            1,
            GAP_OUT,
            True,
            "gap: no checkpoint for 0:00:19 between 02:41:06 WIB and 02:41:26 WIB "
            "(allowed 0:00:15): the unit was stopped, paused or cut off",
        ),
        (QUIET, 1, DOOR_OUT, False, "door pintu-utama opened at 02:13:42 WIB (seq 13)"),
        (DOOR, 0, QUIET_OUT, False, "quiet"),
        (DOOR, 1, GAP_OUT, False, "gap: no checkpoint for 0:00:19"),
        (GAP, 0, QUIET_OUT, False, "quiet"),
        (GAP, 1, DOOR_OUT, False, "door pintu-utama opened at 02:13:42 WIB (seq 13)"),
    ],
)
def test_the_answer_is_judged_against_what_the_window_holds(
    ask: Ask, code: int, out: str, right: bool, summary: str
) -> None:
    said_right, said = verdict(ask, code, out)
    assert said_right is right
    assert said.startswith(summary)


def test_a_failed_audit_is_never_right() -> None:
    right, said = verdict(QUIET, 2, "", "error: InfluxDB did not answer\n")
    assert not right and said == "audit quiet failed: error: InfluxDB did not answer"
    assert not verdict(GAP, 1, "")[0]


def test_the_demo_line() -> None:
    start = 1_790_000_000 * S  # 2026-09-22 14:13:20 UTC
    ask = Ask("gudang-01", start, start + 12 * S, "quiet")
    assert line(ask, WIB, 0, True, "quiet") == (
        "quiet: gudang-01 21:13:20\u201321:13:32 WIB: quiet (exit 0)"
    )
    wrong = line(GAP, WIB, 0, False, "quiet")
    assert wrong.endswith(": quiet (exit 0); WRONG: expected a gap between checkpoints named")


def test_the_demo_stack_writes_its_checkpoint_period_into_agent_toml(tmp_path: Path) -> None:
    for period, expected in ((None, None), (5, 5)):
        stack = Stack(tmp_path / str(period), checkpoint_s=period)
        bundle = stack.registry / "devices" / stack.site / "gudang-01"
        bundle.mkdir(parents=True)
        (bundle / "agent.toml").write_text(tomli_w.dumps({"broker": {"port": 1}}))
        stack._unpack_unit("gudang-01")
        written = tomllib.loads((stack.unit_dir("gudang-01") / "agent.toml").read_text())
        assert written.get("checkpoint_s") == expected
