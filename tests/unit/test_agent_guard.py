"""The unit's arming policy, pure: which events sound the siren (at once or after an entry
door's delay), which keep pictures, and what a disarm silences; no outbox, no MQTT client."""

from __future__ import annotations

from agent.domain.guard import Guard, GuardState, intrusion_delay_ns, triggers_camera
from agent.domain.siren import Siren
from protocol.alerting import ArmingHow, ArmingMode, ArmingState, Bypass
from protocol.models import Kind

S = 1_000_000_000
WALL = 1_780_000_000 * S  # an event's signed wall-clock time; at_ns are monotonic
SITE = "bangka-barat"
GUARD = Guard(Siren(180 * S), frozenset({"pintu-utama"}))


def arming(mode: ArmingMode, entry_delay_s: int = 30) -> ArmingState:
    return ArmingState(
        site=SITE,
        state=mode,
        since=1_700_000_000 * S,
        by="operator:demo",
        how=ArmingHow.MQTT,
        exit_delay_s=0,
        entry_delay_s=entry_delay_s,
    )


def armed(mode: ArmingMode = ArmingMode.ARMED) -> GuardState:
    return GuardState(arming(mode))


def test_a_door_forced_while_armed_sounds_the_siren_at_once_and_keeps_its_pictures() -> None:
    reaction = GUARD.stored(armed(), Kind.DOOR, "pintu-samping", "open", 10 * S, WALL)
    assert reaction.camera
    assert GUARD.sounding(reaction.state) and GUARD.deadline(reaction.state) == 190 * S


def test_an_entry_door_waits_out_the_sites_entry_delay_before_the_siren_sounds() -> None:
    state = GUARD.stored(armed(), Kind.DOOR, "pintu-utama", "open", 10 * S, WALL).state
    assert not GUARD.sounding(state) and GUARD.deadline(state) == 40 * S
    assert not GUARD.sounding(GUARD.tick(state, 39 * S))
    assert GUARD.sounding(GUARD.tick(state, 40 * S))


def test_a_disarm_within_the_entry_delay_keeps_the_siren_silent() -> None:
    state = GUARD.stored(armed(), Kind.DOOR, "pintu-utama", "open", 10 * S, WALL).state
    state = GUARD.heard(state, arming(ArmingMode.DISARMED))
    assert not state.guarding and GUARD.deadline(state) is None
    assert not GUARD.sounding(GUARD.tick(state, 100 * S))


def test_a_disarm_silences_a_sounding_siren_and_a_rearm_does_not_restart_it() -> None:
    state = GUARD.stored(armed(), Kind.MOTION, "pir-gudang", "motion", 0, WALL).state
    assert GUARD.sounding(state)
    state = GUARD.heard(state, arming(ArmingMode.DISARMED))
    assert not GUARD.sounding(state)
    state = GUARD.heard(state, arming(ArmingMode.ARMED))
    assert state.guarding and not GUARD.sounding(GUARD.tick(state, 1 * S))


def test_a_pending_arm_already_guards_every_door_and_motion() -> None:
    state = GUARD.stored(armed(ArmingMode.PENDING), Kind.MOTION, "pir", "motion", 5 * S, WALL).state
    assert GUARD.sounding(state)


def test_nothing_sounds_while_disarmed_or_before_any_arming_state_was_heard() -> None:
    for state in (GuardState(), armed(ArmingMode.DISARMED)):
        for kind, value in ((Kind.DOOR, "open"), (Kind.MOTION, "motion")):
            assert not GUARD.sounding(
                GUARD.stored(state, kind, "pintu-samping", value, 0, WALL).state
            )


def test_every_alarms_trigger_keeps_its_pictures_whatever_arming_the_unit_heard() -> None:
    """The collector decides what alarms, on its own arming state and history; the unit's
    view lags it (#18: an intrusion was left without a still of its own)."""
    for state in (GuardState(), armed(ArmingMode.DISARMED), armed(ArmingMode.ARMING), armed()):
        assert GUARD.stored(state, Kind.DOOR, "pintu-samping", "open", 0, WALL).camera
        assert GUARD.stored(state, Kind.TAMPER, "tutup", "tampered", 0, WALL).camera
        assert GUARD.stored(state, Kind.MOTION, "pir", "motion", 0, WALL).camera
        assert GUARD.stored(state, Kind.CAMERA, "camera", "covered", 0, WALL).camera


def test_closing_held_open_patrol_and_tamper_are_no_intrusions() -> None:
    for kind, value in (
        (Kind.DOOR, "closed"),
        (Kind.DOOR, "held-open"),
        (Kind.PATROL, "checkin"),
        (Kind.TAMPER, "tampered"),
        (Kind.MOTION, "still"),
    ):
        assert intrusion_delay_ns(kind, "pintu-utama", value, arming(ArmingMode.ARMED), ()) is None
        assert not GUARD.sounding(GUARD.stored(armed(), kind, "x", value, 0, WALL).state)


def test_the_entry_delay_applies_to_entry_doors_only_never_to_motion() -> None:
    state = arming(ArmingMode.ARMED, entry_delay_s=45)
    doors = {"pintu-utama"}
    assert intrusion_delay_ns(Kind.DOOR, "pintu-utama", "open", state, doors) == 45 * S
    assert intrusion_delay_ns(Kind.DOOR, "pintu-samping", "open", state, doors) == 0
    assert intrusion_delay_ns(Kind.MOTION, "pintu-utama", "motion", state, doors) == 0


def test_a_unit_without_a_siren_still_keeps_pictures_and_has_no_deadline() -> None:
    quiet = Guard(None, frozenset())
    reaction = quiet.stored(armed(), Kind.MOTION, "pir", "motion", 0, WALL)
    assert reaction.camera and not quiet.sounding(reaction.state)
    assert quiet.deadline(reaction.state) is None
    assert quiet.tick(reaction.state, 10 * S) == reaction.state


def test_only_the_triggers_of_alarms_keep_pictures() -> None:
    assert triggers_camera(Kind.MOTION, "motion")
    for kind, value in (
        (Kind.DOOR, "closed"),
        (Kind.DOOR, "held-open"),
        (Kind.MOTION, "still"),
        (Kind.TAMPER, "normal"),
        (Kind.PATROL, "checkin"),
        (Kind.CAMERA, "uncovered"),
        (Kind.CAMERA, "snapshot"),
        (Kind.CAMERA, "fault"),
    ):
        assert not triggers_camera(kind, value)


def test_a_metered_unit_pictures_only_motion_that_may_be_an_intrusion() -> None:
    """`[camera] motion = "guarded"`: by day, staff walking past a PIR cost no pictures; but
    wherever the collector could judge the motion an intrusion, for all the unit knows, it is
    pictured (#18: every alarm's notification carries its still)."""
    metered = Guard(None, frozenset(), "gudang-01", motion_always=False)

    def pictured(state: GuardState, *, linked: bool = True, wall: int = WALL) -> bool:
        return metered.stored(state, Kind.MOTION, "pir", "motion", 0, wall, linked).camera

    disarmed = armed(ArmingMode.DISARMED)
    assert not pictured(disarmed)
    assert pictured(disarmed, linked=False)  # it cannot hear an arming now
    assert pictured(GuardState())  # it never heard one
    assert pictured(armed(ArmingMode.ARMING))  # the collector arms at the delay's end
    assert pictured(armed()) and pictured(armed(ArmingMode.PENDING))
    scheduled = arming(ArmingMode.DISARMED).model_copy(
        update={"next_change": WALL + 30 * S, "next_state": ArmingMode.ARMED}
    )
    assert pictured(GuardState(scheduled))  # the schedule arms within the minute
    assert not pictured(GuardState(scheduled), wall=WALL - 31 * S)  # not yet
    bypassed = arming(ArmingMode.ARMED).model_copy(
        update={"bypassed": (Bypass(device="gudang-01", sensor="pir", zone="default", by="demo",
                                    reason="rusak", since=WALL - S, until=WALL + S),)}
    )  # fmt: skip
    assert not pictured(GuardState(bypassed))  # no intrusion for it: no picture needed
    door = metered.stored(disarmed, Kind.DOOR, "pintu-utama", "open", 0, WALL, True)
    assert door.camera  # doors, the lid and a covered lens: always
    assert GUARD.stored(disarmed, Kind.MOTION, "pir", "motion", 0, WALL).camera  # the default
