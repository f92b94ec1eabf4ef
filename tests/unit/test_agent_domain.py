"""The pure sensor state machines, driven with explicit times (ns)."""

from __future__ import annotations

from agent.domain import debounce
from agent.domain.door import Door, DoorState
from agent.domain.motion import Motion
from agent.domain.observation import Observation
from agent.domain.switch import patrol_button, tamper
from protocol.models import Kind

MS = 1_000_000
S = 1_000 * MS
DEBOUNCE = 50 * MS


def states(out: list[Observation]) -> list[str]:
    return [o.state for o in out]


# --- debounce ---------------------------------------------------------------------------------


def test_a_bounce_shorter_than_the_debounce_time_is_ignored() -> None:
    c = debounce.Contact(stable=False)
    c = debounce.edge(c, True, 1000 * MS)
    c = debounce.edge(c, False, 1010 * MS)  # back before 50 ms
    c, changed = debounce.settle(c, 2000 * MS, DEBOUNCE)
    assert not changed
    assert c.stable is False
    assert debounce.deadline(c, DEBOUNCE) is None


def test_a_level_held_long_enough_is_committed() -> None:
    c = debounce.edge(debounce.Contact(stable=False), True, 1000 * MS)
    c, changed = debounce.settle(c, 1049 * MS, DEBOUNCE)
    assert (changed, c.stable) == (False, False)
    c, changed = debounce.settle(c, 1050 * MS, DEBOUNCE)
    assert (changed, c.stable) == (True, True)
    assert c.pending is None


def test_each_bounce_restarts_the_wait_from_the_last_edge() -> None:
    c = debounce.Contact(stable=False)
    for t, level in [(0, True), (10, False), (20, True), (30, False), (40, True)]:
        c = debounce.edge(c, level, t * MS)
    assert debounce.deadline(c, DEBOUNCE) == 90 * MS
    c, changed = debounce.settle(c, 89 * MS, DEBOUNCE)
    assert not changed
    c, changed = debounce.settle(c, 90 * MS, DEBOUNCE)
    assert changed and c.stable


def test_debounce_deadline_is_none_when_nothing_is_pending() -> None:
    assert debounce.deadline(debounce.Contact(stable=True), DEBOUNCE) is None


# --- door -------------------------------------------------------------------------------------

DOOR = Door("pintu-utama", debounce_ns=DEBOUNCE, held_open_ns=120 * S)


def closed_door() -> DoorState:
    state, out = DOOR.initial(False, 0)
    assert out == [Observation("pintu-utama", Kind.DOOR, "closed", 0)]
    return state


def test_door_reports_its_initial_state() -> None:
    state, out = DOOR.initial(True, 7 * S)
    assert out == [Observation("pintu-utama", Kind.DOOR, "open", 7 * S)]
    assert DOOR.deadline(state) == 127 * S  # an already-open door is timed for held-open


def test_door_reports_open_at_the_edge_that_started_the_stable_period() -> None:
    state = closed_door()
    state, out = DOOR.edge(state, True, 10 * S)
    assert out == []
    state, out = DOOR.edge(state, False, 10 * S + 5 * MS)  # bounce
    state, out = DOOR.edge(state, True, 10 * S + 12 * MS)
    assert out == []
    assert DOOR.deadline(state) == 10 * S + 62 * MS
    state, out = DOOR.tick(state, 10 * S + 62 * MS)
    assert out == [Observation("pintu-utama", Kind.DOOR, "open", 10 * S + 12 * MS)]


def test_door_ignores_a_bounce_shorter_than_the_debounce_time() -> None:
    state = closed_door()
    state, _ = DOOR.edge(state, True, 10 * S)
    state, out = DOOR.edge(state, False, 10 * S + 30 * MS)
    assert out == []
    assert DOOR.deadline(state) is None
    state, out = DOOR.tick(state, 60 * S)
    assert out == []


def test_door_reports_closed_after_open() -> None:
    state = closed_door()
    state, _ = DOOR.edge(state, True, 1 * S)
    state, _ = DOOR.tick(state, 2 * S)
    state, _ = DOOR.edge(state, False, 5 * S)
    state, out = DOOR.tick(state, 5 * S + DEBOUNCE)
    assert states(out) == ["closed"]
    assert out[0].at_ns == 5 * S


def test_door_reports_held_open_once_after_held_open_time() -> None:
    state = closed_door()
    state, _ = DOOR.edge(state, True, 1 * S)
    state, out = DOOR.tick(state, 1 * S + DEBOUNCE)
    assert states(out) == ["open"]
    assert DOOR.deadline(state) == 121 * S
    state, out = DOOR.tick(state, 121 * S - 1)
    assert out == []
    state, out = DOOR.tick(state, 121 * S)
    assert out == [Observation("pintu-utama", Kind.DOOR, "held-open", 121 * S)]
    for t in (122 * S, 500 * S, 10_000 * S):
        state, out = DOOR.tick(state, t)
        assert out == []
    assert DOOR.deadline(state) is None


def test_held_open_is_timed_from_the_opening_edge_even_if_ticked_late() -> None:
    state = closed_door()
    state, _ = DOOR.edge(state, True, 1 * S)
    state, out = DOOR.tick(state, 300 * S)
    assert out == [
        Observation("pintu-utama", Kind.DOOR, "open", 1 * S),
        Observation("pintu-utama", Kind.DOOR, "held-open", 121 * S),
    ]


def test_door_closed_before_held_open_time_reports_no_held_open() -> None:
    state = closed_door()
    state, _ = DOOR.edge(state, True, 1 * S)
    state, _ = DOOR.tick(state, 2 * S)
    state, _ = DOOR.edge(state, False, 60 * S)
    state, out = DOOR.tick(state, 61 * S)
    assert states(out) == ["closed"]
    assert DOOR.deadline(state) is None
    state, out = DOOR.tick(state, 1000 * S)
    assert out == []


def test_held_open_is_reported_again_only_after_closing_and_reopening() -> None:
    state = closed_door()
    state, _ = DOOR.edge(state, True, 1 * S)
    state, out = DOOR.tick(state, 200 * S)
    assert states(out) == ["open", "held-open"]
    state, _ = DOOR.edge(state, False, 300 * S)
    state, out = DOOR.tick(state, 301 * S)
    assert states(out) == ["closed"]
    state, _ = DOOR.edge(state, True, 400 * S)
    state, out = DOOR.tick(state, 401 * S)
    assert states(out) == ["open"]
    assert DOOR.deadline(state) == 520 * S
    state, out = DOOR.tick(state, 520 * S)
    assert out == [Observation("pintu-utama", Kind.DOOR, "held-open", 520 * S)]


def test_door_deadline_is_the_earlier_of_debounce_and_held_open() -> None:
    state, _ = DOOR.initial(True, 0)
    assert DOOR.deadline(state) == 120 * S
    state, _ = DOOR.edge(state, False, 119 * S + 980 * MS)  # closing edge just before held-open
    assert DOOR.deadline(state) == 119 * S + 980 * MS + DEBOUNCE  # settle the close first
    state, _ = DOOR.edge(state, True, 119 * S + 990 * MS)  # bounced back: nothing pending
    assert DOOR.deadline(state) == 120 * S
    state, _ = DOOR.initial(True, 0)
    state, _ = DOOR.edge(state, False, 10 * S)
    assert DOOR.deadline(state) == 10 * S + DEBOUNCE  # the debounce comes first here


def test_a_door_closed_just_before_held_open_time_reports_no_held_open() -> None:
    state = closed_door()
    state, _ = DOOR.edge(state, True, 1 * S)
    state, seen = DOOR.tick(state, 1 * S + DEBOUNCE)
    state, out = DOOR.edge(state, False, 121 * S - 20 * MS)  # closed 20 ms before held-open
    seen += out
    while (due := DOOR.deadline(state)) is not None:
        state, out = DOOR.tick(state, due)
        seen += out
    assert states(seen) == ["open", "closed"]


def test_door_deadline_is_none_when_closed_and_quiet() -> None:
    assert DOOR.deadline(closed_door()) is None


# --- motion -----------------------------------------------------------------------------------

PIR = Motion("pir-1", debounce_ns=DEBOUNCE, retrigger_ns=30 * S)


def test_motion_is_reported_once_per_burst_and_still_after_the_quiet_window() -> None:
    state, out = PIR.initial(False, 0)
    assert out == []
    assert PIR.deadline(state) is None
    seen: list[Observation] = []
    # a burst: active 10 s, quiet 5 s, active again twice inside the retrigger window
    for t, level in [(10, True), (15, False), (20, True), (22, False), (40, True), (41, False)]:
        state, out = PIR.edge(state, level, t * S)
        seen += out
        state, out = PIR.tick(state, t * S + DEBOUNCE)
        seen += out
    assert seen == [Observation("pir-1", Kind.MOTION, "motion", 10 * S)]
    assert PIR.deadline(state) == 71 * S
    state, out = PIR.tick(state, 71 * S - 1)
    assert out == []
    state, out = PIR.tick(state, 71 * S)
    assert out == [Observation("pir-1", Kind.MOTION, "still", 71 * S)]
    assert PIR.deadline(state) is None


def test_motion_after_still_starts_a_new_burst() -> None:
    state, _ = PIR.initial(False, 0)
    state, out = PIR.edge(state, True, 1 * S)
    state, out = PIR.tick(state, 2 * S)
    assert states(out) == ["motion"]
    state, _ = PIR.edge(state, False, 3 * S)
    state, out = PIR.tick(state, 100 * S)
    assert out == [Observation("pir-1", Kind.MOTION, "still", 33 * S)]
    state, _ = PIR.edge(state, True, 200 * S)
    state, out = PIR.tick(state, 201 * S)
    assert out == [Observation("pir-1", Kind.MOTION, "motion", 200 * S)]


def test_a_retrigger_just_inside_the_window_adds_nothing() -> None:
    state, seen = PIR.initial(True, 0)
    state, out = PIR.edge(state, False, 1 * S)
    seen += out
    state, out = PIR.tick(state, 1 * S + DEBOUNCE)
    seen += out
    state, out = PIR.edge(state, True, 31 * S - 20 * MS)  # 20 ms before the window ends
    seen += out
    while (due := PIR.deadline(state)) is not None:
        state, out = PIR.tick(state, due)
        seen += out
    assert states(seen) == ["motion"]


def test_motion_stays_while_the_line_stays_active() -> None:
    state, _ = PIR.initial(False, 0)
    state, _ = PIR.edge(state, True, 1 * S)
    state, _ = PIR.tick(state, 2 * S)
    state, out = PIR.tick(state, 10_000 * S)
    assert out == []
    assert PIR.deadline(state) is None


def test_motion_glitch_shorter_than_debounce_reports_nothing() -> None:
    state, _ = PIR.initial(False, 0)
    state, _ = PIR.edge(state, True, 1 * S)
    state, out = PIR.edge(state, False, 1 * S + 10 * MS)
    assert out == []
    state, out = PIR.tick(state, 100 * S)
    assert out == []


def test_motion_active_at_start_is_reported_and_goes_still() -> None:
    state, out = PIR.initial(True, 5 * S)
    assert out == [Observation("pir-1", Kind.MOTION, "motion", 5 * S)]
    state, _ = PIR.edge(state, False, 6 * S)
    state, out = PIR.tick(state, 6 * S + DEBOUNCE)
    assert out == []
    assert PIR.deadline(state) == 36 * S
    state, out = PIR.tick(state, 36 * S)
    assert states(out) == ["still"]


# --- switches ---------------------------------------------------------------------------------


def test_tamper_reports_its_initial_state() -> None:
    sw = tamper("lid", DEBOUNCE)
    _, out = sw.initial(False, 3 * S)
    assert out == [Observation("lid", Kind.TAMPER, "normal", 3 * S)]
    _, out = sw.initial(True, 3 * S)
    assert out == [Observation("lid", Kind.TAMPER, "tampered", 3 * S)]


def test_tamper_reports_every_debounced_change() -> None:
    sw = tamper("lid", DEBOUNCE)
    state, _ = sw.initial(False, 0)
    state, out = sw.edge(state, True, 1 * S)
    assert out == []
    assert sw.deadline(state) == 1 * S + DEBOUNCE
    state, out = sw.tick(state, 1 * S + DEBOUNCE)
    assert out == [Observation("lid", Kind.TAMPER, "tampered", 1 * S)]
    state, _ = sw.edge(state, False, 9 * S)
    state, out = sw.tick(state, 10 * S)
    assert out == [Observation("lid", Kind.TAMPER, "normal", 9 * S)]
    assert sw.deadline(state) is None


def test_patrol_button_reports_checkin_on_press_only() -> None:
    button = patrol_button("patroli", DEBOUNCE)
    state, out = button.initial(False, 0)
    assert out == []
    state, _ = button.edge(state, True, 1 * S)
    state, out = button.tick(state, 2 * S)
    assert out == [Observation("patroli", Kind.PATROL, "checkin", 1 * S)]
    state, _ = button.edge(state, False, 3 * S)
    state, out = button.tick(state, 4 * S)
    assert out == []
    assert state.stable is False  # release still tracked, so the next press counts
    state, _ = button.edge(state, True, 5 * S)
    state, out = button.tick(state, 6 * S)
    assert states(out) == ["checkin"]


def test_patrol_button_held_at_start_is_not_a_checkin() -> None:
    button = patrol_button("patroli", DEBOUNCE)
    _, out = button.initial(True, 0)
    assert out == []


def test_patrol_button_bounce_is_not_a_checkin() -> None:
    button = patrol_button("patroli", DEBOUNCE)
    state, _ = button.initial(False, 0)
    state, _ = button.edge(state, True, 1 * S)
    state, out = button.edge(state, False, 1 * S + 20 * MS)
    assert out == []
    state, out = button.tick(state, 5 * S)
    assert out == []
