"""The arming state machine: exit and entry delays, schedule edges in Jakarta, people, audit."""

from __future__ import annotations

import random

from broker.alerts import arming
from broker.alerts.arming import Arm, BypassSensor, Disarm, EntryOpened, SiteArming, Step, Tick
from broker.alerts.config import SiteAlerts, Window
from protocol.alerting import ArmingAudit, ArmingHow, ArmingMode, ArmingState
from protocol.models import parse
from tests.unit.test_alerts_support import FRI, MON, NIGHTS_AND_SUNDAY, SAT, SITE, TUE, S, jkt

MANUAL = SiteAlerts(exit_delay_s=60, entry_delay_s=30)
SCHEDULED = SiteAlerts(schedule=NIGHTS_AND_SUNDAY, exit_delay_s=60, entry_delay_s=30)
CLI = ArmingHow.CLI


def start(config: SiteAlerts, now: int) -> SiteArming:
    return arming.initial(SITE, config, now).state


def run(state: SiteArming, config: SiteAlerts, *steps: tuple[arming.ArmingInput, int]) -> Step:
    done = Step(state)
    audits: list[ArmingAudit] = []
    for inp, now in steps:
        done = arming.step(done.state, config, inp, now)
        audits.extend(done.audits)
    return Step(done.state, tuple(audits), done.expired, done.publish)


def moves(step: Step) -> list[tuple[ArmingMode | None, ArmingMode, int]]:
    return [(a.from_state, a.to_state, a.at) for a in step.audits]


def test_a_site_first_seen_inside_its_armed_schedule_starts_armed_without_exit_delay() -> None:
    first = arming.initial(SITE, SCHEDULED, jkt(MON, "22:00"))
    assert first.state.state is ArmingMode.ARMED
    assert first.publish
    (audit,) = first.audits
    assert (audit.from_state, audit.to_state, audit.how) == (None, ArmingMode.ARMED, "startup")


def test_a_site_without_schedule_starts_disarmed() -> None:
    assert start(MANUAL, jkt(MON, "22:00")).state is ArmingMode.DISARMED


def test_arming_by_hand_runs_the_exit_delay_then_is_armed_by_the_same_person() -> None:
    t0 = jkt(MON, "12:00")
    armed = arming.step(start(MANUAL, t0), MANUAL, Arm("Budi", CLI), t0)
    assert armed.state.state is ArmingMode.ARMING
    assert armed.state.until == t0 + 60 * S
    (audit,) = armed.audits
    assert (audit.by, audit.how, audit.at) == ("Budi", CLI, t0)
    still = arming.step(armed.state, MANUAL, Tick(), t0 + 59 * S)
    assert still.state.state is ArmingMode.ARMING and not still.audits
    done = arming.step(still.state, MANUAL, Tick(), t0 + 61 * S)
    assert done.state.state is ArmingMode.ARMED
    assert done.state.since == t0 + 60 * S  # at the end of the delay, not at the tick
    (audit,) = done.audits
    assert (audit.by, audit.how, audit.reason) == ("Budi", CLI, "exit delay over")


def test_no_exit_delay_arms_at_once() -> None:
    config = SiteAlerts(exit_delay_s=0)
    t0 = jkt(MON, "12:00")
    assert arming.step(start(config, t0), config, Arm("Budi", CLI), t0).state.state is (
        ArmingMode.ARMED
    )


def test_arming_an_armed_site_changes_nothing_and_audits_nothing() -> None:
    t0 = jkt(MON, "12:00")
    armed = run(start(MANUAL, t0), MANUAL, (Arm("Budi", CLI), t0), (Tick(), t0 + 60 * S)).state
    again = arming.step(armed, MANUAL, Arm("Sari", ArmingHow.MQTT), t0 + 70 * S)
    assert again.state.state is ArmingMode.ARMED and again.state.by == "Budi"
    assert not again.audits and not again.publish


def test_disarming_in_the_exit_delay_stops_it() -> None:
    t0 = jkt(MON, "12:00")
    done = run(
        start(MANUAL, t0), MANUAL, (Arm("Budi", CLI), t0), (Disarm("Budi", CLI), t0 + 10 * S)
    )
    assert done.state.state is ArmingMode.DISARMED
    assert arming.step(done.state, MANUAL, Tick(), t0 + 120 * S).state.state is ArmingMode.DISARMED


def armed_at(t0: int, config: SiteAlerts = MANUAL) -> SiteArming:
    return run(start(config, t0), config, (Arm("Budi", CLI), t0), (Tick(), t0 + 60 * S)).state


def test_an_entry_door_starts_the_entry_delay_from_when_it_opened() -> None:
    t0 = jkt(MON, "20:00")
    opened = t0 + 100 * S
    pending = arming.step(
        armed_at(t0), MANUAL, EntryOpened("gudang-01", "pintu-utama", opened), opened + 2 * S
    )
    s = pending.state
    assert s.state is ArmingMode.PENDING
    assert s.until == opened + 30 * S  # the event's own time, not its arrival
    assert (s.entry_device, s.entry_sensor, s.by, s.how) == (
        "gudang-01",
        "pintu-utama",
        "gudang-01/pintu-utama",
        ArmingHow.SENSOR,
    )
    assert pending.publish and pending.expired is None


def test_disarming_within_the_entry_delay_cancels_the_alarm() -> None:
    t0 = jkt(MON, "20:00")
    opened = t0 + 100 * S
    done = run(
        armed_at(t0),
        MANUAL,
        (EntryOpened("gudang-01", "pintu-utama", opened), opened),
        (Disarm("Budi", CLI), opened + 29 * S),
        (Tick(), opened + 60 * S),
    )
    assert done.state.state is ArmingMode.DISARMED
    assert done.expired is None
    assert "entry delay" in done.audits[-1].reason


def test_an_entry_delay_that_runs_out_reports_the_door_and_rearms() -> None:
    t0 = jkt(MON, "20:00")
    opened = t0 + 100 * S
    pending = arming.step(
        armed_at(t0), MANUAL, EntryOpened("gudang-01", "pintu-utama", opened), opened
    )
    early = arming.step(pending.state, MANUAL, Tick(), opened + 29 * S)
    assert early.expired is None and early.state.state is ArmingMode.PENDING
    late = arming.step(early.state, MANUAL, Tick(), opened + 31 * S)
    assert late.expired == arming.EntryExpired(
        SITE, "gudang-01", "pintu-utama", opened, opened + 30 * S
    )
    assert late.state.state is ArmingMode.ARMED


def test_without_entry_delay_an_entry_door_expires_at_once() -> None:
    config = SiteAlerts(exit_delay_s=60, entry_delay_s=0)
    t0 = jkt(MON, "20:00")
    done = arming.step(
        armed_at(t0, config),
        config,
        EntryOpened("gudang-01", "pintu-utama", t0 + 90 * S),
        t0 + 90 * S,
    )
    assert done.expired is not None
    assert done.state.state is ArmingMode.ARMED


def test_an_entry_door_while_disarmed_or_in_the_exit_delay_does_nothing() -> None:
    t0 = jkt(MON, "12:00")
    disarmed = start(MANUAL, t0)
    assert arming.step(disarmed, MANUAL, EntryOpened("d", "s", t0), t0).state.state is (
        ArmingMode.DISARMED
    )
    leaving = arming.step(disarmed, MANUAL, Arm("Budi", CLI), t0).state
    assert arming.step(leaving, MANUAL, EntryOpened("d", "s", t0), t0 + S).state.state is (
        ArmingMode.ARMING
    )


def test_the_schedule_arms_at_1800_jakarta_through_the_exit_delay() -> None:
    state = start(SCHEDULED, jkt(MON, "12:00"))
    assert state.state is ArmingMode.DISARMED
    before = arming.step(state, SCHEDULED, Tick(), jkt(MON, "17:59:59"))
    assert before.state.state is ArmingMode.DISARMED and not before.audits
    at = arming.step(before.state, SCHEDULED, Tick(), jkt(MON, "18:00:01"))
    assert at.state.state is ArmingMode.ARMING
    assert at.state.since == jkt(MON, "18:00")
    assert (at.state.by, at.state.how) == ("schedule", ArmingHow.SCHEDULE)
    armed = arming.step(at.state, SCHEDULED, Tick(), jkt(MON, "18:01"))
    assert armed.state.state is ArmingMode.ARMED


def test_the_schedule_disarms_at_0700_jakarta() -> None:
    state = start(SCHEDULED, jkt(MON, "22:00"))
    done = arming.step(state, SCHEDULED, Tick(), jkt(TUE, "07:00"))
    assert done.state.state is ArmingMode.DISARMED
    assert moves(done) == [(ArmingMode.ARMED, ArmingMode.DISARMED, jkt(TUE, "07:00"))]


def test_a_manual_disarm_at_night_holds_until_the_next_scheduled_transition() -> None:
    state = start(SCHEDULED, jkt(MON, "20:00"))
    done = run(
        state,
        SCHEDULED,
        (Disarm("Budi", CLI), jkt(MON, "22:00")),
        (Tick(), jkt(TUE, "03:00")),
        (Tick(), jkt(TUE, "07:00")),  # the scheduled disarm: already disarmed, no change
        (Tick(), jkt(TUE, "17:59")),
    )
    assert done.state.state is ArmingMode.DISARMED
    assert moves(done) == [(ArmingMode.ARMED, ArmingMode.DISARMED, jkt(MON, "22:00"))]
    evening = arming.step(done.state, SCHEDULED, Tick(), jkt(TUE, "18:00"))
    assert evening.state.state is ArmingMode.ARMING


def test_a_manual_arm_at_noon_holds_through_the_evening_until_the_morning_disarm() -> None:
    state = start(SCHEDULED, jkt(MON, "12:00"))
    done = run(
        state,
        SCHEDULED,
        (Arm("Budi", CLI), jkt(MON, "12:00")),
        (Tick(), jkt(MON, "18:30")),
        (Tick(), jkt(TUE, "06:59")),
    )
    assert done.state.state is ArmingMode.ARMED
    assert done.state.by == "Budi"
    assert arming.step(done.state, SCHEDULED, Tick(), jkt(TUE, "07:00")).state.state is (
        ArmingMode.DISARMED
    )


def test_rearm_after_brings_a_forgotten_manual_disarm_back_to_armed() -> None:
    config = SiteAlerts(schedule=NIGHTS_AND_SUNDAY, exit_delay_s=60, rearm_after_min=60)
    state = start(config, jkt(MON, "20:00"))
    disarmed = arming.step(state, config, Disarm("Budi", CLI), jkt(MON, "22:00"))
    assert disarmed.state.rearm_at == jkt(MON, "23:00")
    done = arming.step(disarmed.state, config, Tick(), jkt(MON, "23:00:30"))
    assert done.state.state is ArmingMode.ARMING
    assert done.state.since == jkt(MON, "23:00")
    assert "ran out after 60 min" in done.audits[0].reason


def test_a_scheduled_disarm_before_the_rearm_cancels_it() -> None:
    config = SiteAlerts(schedule=NIGHTS_AND_SUNDAY, rearm_after_min=60)
    state = start(config, jkt(TUE, "05:00"))
    done = run(state, config, (Disarm("Budi", CLI), jkt(TUE, "06:30")), (Tick(), jkt(TUE, "08:00")))
    assert done.state.state is ArmingMode.DISARMED
    assert done.state.rearm_at is None


def test_after_a_long_outage_every_missed_transition_is_applied_at_its_own_time() -> None:
    state = start(SCHEDULED, jkt(MON, "12:00"))
    done = arming.step(state, SCHEDULED, Tick(), jkt(TUE, "08:00"))
    assert done.state.state is ArmingMode.DISARMED
    assert moves(done) == [
        (ArmingMode.DISARMED, ArmingMode.ARMING, jkt(MON, "18:00")),
        (ArmingMode.ARMING, ArmingMode.ARMED, jkt(MON, "18:01")),
        (ArmingMode.ARMED, ArmingMode.DISARMED, jkt(TUE, "07:00")),
    ]


def test_the_retained_state_says_when_the_schedule_changes_next() -> None:
    state = start(SCHEDULED, jkt(FRI, "20:00"))
    wire = state.wire()
    assert wire.next_change == jkt(SAT, "07:00")
    assert wire.next_state is ArmingMode.DISARMED
    parsed = parse(ArmingState, wire.to_json())
    assert parsed == wire


def test_state_at_and_disarmed_between_read_the_audit_history() -> None:
    t0 = jkt(MON, "12:00")
    done = run(
        start(MANUAL, t0),
        MANUAL,
        (Arm("Budi", CLI), t0),
        (Tick(), t0 + 60 * S),
        (Disarm("Budi", CLI), t0 + 600 * S),
    )
    history = [*arming.initial(SITE, MANUAL, t0).audits, *done.audits]
    assert arming.state_at(history, t0 + 30 * S) is ArmingMode.ARMING
    assert arming.state_at(history, t0 + 300 * S) is ArmingMode.ARMED
    assert arming.state_at(history, t0 + 700 * S) is ArmingMode.DISARMED
    assert arming.disarmed_between(history, t0 + 590 * S, t0 + 620 * S)
    assert not arming.disarmed_between(history, t0 + 100 * S, t0 + 130 * S)


def test_quiet_is_only_said_when_a_tick_would_change_nothing_but_the_time_seen() -> None:
    """arming.quiet spares the step every event makes (the collector's hot path): it must
    never spare one that would fire a delay, a deadline or a schedule edge. A week of
    arming, disarming, entry doors and bypasses at uneven times, under four configurations,
    with the tick it spares checked each time."""
    week = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    always = [Window(days=week, start="00:00", end="24:00")]
    configs = (
        MANUAL,
        SCHEDULED,
        SiteAlerts(schedule=always, exit_delay_s=0, entry_delay_s=30),
        SiteAlerts(exit_delay_s=0, entry_delay_s=0),
    )
    rng = random.Random(7)
    said = {True: 0, False: 0}
    for config in configs:
        now = jkt(MON, "08:00")
        state = start(config, now)
        for _ in range(600):
            now += rng.choice((1, 7, 29, 61, 300, 1800, 3 * 3600)) * S
            if arming.quiet(state, config, now):
                spared = arming.step(state, config, Tick(), now)
                assert not spared.audits and spared.expired is None and not spared.publish
                assert spared.state.model_copy(update={"schedule_seen": state.schedule_seen}) == (
                    state
                ), (config, state, now)
                said[True] += 1
            else:
                said[False] += 1
            inp = rng.choice(
                (
                    Tick(),
                    Arm("Budi", CLI),
                    Disarm("Sari", CLI),
                    EntryOpened("gudang-01", "pintu-utama", now),
                    BypassSensor("gudang-01", "pir", "Budi", CLI, now + 900 * S, "rusak"),
                )
            )
            state = arming.step(state, config, inp, now).state
    assert said[True] > 100 and said[False] > 100, said  # both answers were put to the test
