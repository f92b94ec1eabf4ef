"""Weekly schedules in Asia/Jakarta: on/off at the exact minute, edges across midnight and weeks."""

from __future__ import annotations

from broker.alerts.config import Window
from broker.alerts.schedule import Edge, WeeklySchedule
from tests.unit.test_alerts_support import (
    FRI,
    MON,
    NEXT_MON,
    NIGHTS_AND_SUNDAY,
    SAT,
    SUN,
    TUE,
    S,
    jkt,
)

SCHED = WeeklySchedule.of(NIGHTS_AND_SUNDAY, "Asia/Jakarta")


def test_a_weeknight_window_turns_on_at_1800_jakarta_time_not_utc() -> None:
    assert not SCHED.is_on(jkt(MON, "17:59:59"))
    assert SCHED.is_on(jkt(MON, "18:00"))
    assert jkt(MON, "18:00") % (24 * 3600 * S) == 11 * 3600 * S  # 18:00 WIB is 11:00 UTC


def test_a_window_ending_before_it_starts_runs_into_the_next_morning() -> None:
    assert SCHED.is_on(jkt(TUE, "06:59:59"))
    assert not SCHED.is_on(jkt(TUE, "07:00"))


def test_friday_night_runs_into_saturday_and_saturday_evening_stays_off() -> None:
    assert SCHED.is_on(jkt(SAT, "06:00"))
    assert not SCHED.is_on(jkt(SAT, "12:00"))
    assert not SCHED.is_on(jkt(SAT, "20:00"))


def test_all_sunday_is_on_until_midnight_and_monday_morning_is_off() -> None:
    assert SCHED.is_on(jkt(SUN, "00:00"))
    assert SCHED.is_on(jkt(SUN, "23:59:59"))
    assert not SCHED.is_on(jkt(NEXT_MON, "00:00"))


def test_edges_are_listed_in_order_with_their_exact_times() -> None:
    assert SCHED.edges(jkt(MON, "12:00"), jkt(TUE, "12:00")) == [
        Edge(jkt(MON, "18:00"), True),
        Edge(jkt(TUE, "07:00"), False),
    ]


def test_an_edge_exactly_at_the_upper_bound_counts_and_at_the_lower_does_not() -> None:
    assert SCHED.edges(jkt(MON, "17:00"), jkt(MON, "18:00")) == [Edge(jkt(MON, "18:00"), True)]
    assert SCHED.edges(jkt(MON, "18:00"), jkt(MON, "19:00")) == []


def test_touching_windows_merge_into_one_span_without_an_edge_between() -> None:
    sched = WeeklySchedule.of(
        [
            Window(days=["sat"], start="18:00", end="24:00"),
            Window(days=["sun"], start="00:00", end="07:00"),
        ],
        "Asia/Jakarta",
    )
    assert sched.edges(jkt(SAT, "12:00"), jkt(SUN, "12:00")) == [
        Edge(jkt(SAT, "18:00"), True),
        Edge(jkt(SUN, "07:00"), False),
    ]


def test_the_next_edge_after_friday_evening_is_saturday_0700() -> None:
    assert SCHED.next_edge(jkt(FRI, "20:00")) == Edge(jkt(SAT, "07:00"), False)


def test_on_since_gives_the_start_of_the_current_span() -> None:
    assert SCHED.on_since(jkt(TUE, "03:00")) == jkt(MON, "18:00")
    assert SCHED.on_since(jkt(TUE, "12:00")) is None


def test_a_schedule_that_is_always_on_has_no_edges() -> None:
    always = WeeklySchedule.of(
        [
            Window(
                days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="24:00"
            )
        ],
        "Asia/Jakarta",
    )
    assert always.is_on(jkt(TUE, "12:00"))
    assert always.edges(jkt(MON, "00:00"), jkt(NEXT_MON, "12:00")) == []
    assert always.next_edge(jkt(TUE, "12:00")) is None


def test_an_empty_schedule_is_never_on() -> None:
    empty = WeeklySchedule.of([], "Asia/Jakarta")
    assert empty.empty
    assert not empty.is_on(jkt(SUN, "12:00"))
    assert empty.next_edge(jkt(SUN, "12:00")) is None


def test_the_same_windows_in_makassar_turn_on_an_hour_earlier_in_utc() -> None:
    wita = WeeklySchedule.of(NIGHTS_AND_SUNDAY, "Asia/Makassar")
    assert wita.is_on(jkt(MON, "17:00"))  # 17:00 WIB is 18:00 WITA
    assert not SCHED.is_on(jkt(MON, "17:00"))


def test_spans_are_remembered_and_each_caller_gets_its_own_list() -> None:
    first = SCHED.spans(jkt(MON, "12:00"), jkt(MON, "12:00"))
    expected = list(first)
    first.clear()  # a caller changing its list changes nothing for the next
    assert SCHED.spans(jkt(MON, "13:00"), jkt(MON, "13:00")) == expected
    assert expected and all(start < end for start, end in expected)
    makassar = WeeklySchedule.of(NIGHTS_AND_SUNDAY, "Asia/Makassar")
    assert makassar.spans(jkt(MON, "13:00"), jkt(MON, "13:00")) != expected  # per schedule
