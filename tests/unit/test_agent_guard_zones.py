"""The unit's siren by zone (#18): a sensor follows its own zone's arming, and a bypassed
sensor sounds nothing, even with the network down (the last arming state heard says so)."""

from __future__ import annotations

from agent.domain.guard import Guard, GuardState
from agent.domain.siren import Siren
from protocol.alerting import ArmingHow, ArmingMode, ArmingState, Bypass, ZoneArming
from protocol.models import Kind

S = 1_000_000_000
EPOCH = 1_780_000_000 * S
"""Wall-clock time (a bypass's since/until, an event's signed ts); the siren's at_ns are
monotonic, seconds since boot: the two clocks are far apart, as on a real unit."""
UNIT = "gudang-01"
GUARD = Guard(Siren(180 * S), frozenset(), UNIT)


def zone(name: str, mode: ArmingMode, *members: str) -> ZoneArming:
    return ZoneArming(zone=name, state=mode, since=0, by="demo", how=ArmingHow.CLI, members=members)


def heard(*bypassed: Bypass) -> GuardState:
    """The perimeter armed, the ballot room (its corridor's PIR) disarmed, the rest disarmed."""
    return GuardState(
        ArmingState(
            site="bangka-barat",
            state=ArmingMode.ARMED,  # the most guarding zone, for units that know no zones
            since=0,
            by="demo",
            how=ArmingHow.CLI,
            exit_delay_s=0,
            entry_delay_s=0,
            zones=(
                zone("default", ArmingMode.DISARMED),
                zone("perimeter", ArmingMode.ARMED, UNIT),
                zone("ruang-surat-suara", ArmingMode.DISARMED, f"{UNIT}/lorong"),
            ),
            bypassed=bypassed,
        )
    )


def test_the_ballot_rooms_corridor_sounds_nothing_while_the_perimeter_is_armed() -> None:
    inside = GUARD.stored(heard(), Kind.MOTION, "lorong", "motion", 10 * S, EPOCH + 10 * S)
    assert not GUARD.sounding(inside.state) and inside.camera  # its pictures are kept all the same
    door = GUARD.stored(heard(), Kind.DOOR, "pintu-utama", "open", 10 * S, EPOCH + 10 * S)
    assert GUARD.sounding(door.state)  # the unit's other sensors are the perimeter's


def test_a_bypassed_door_sounds_nothing_until_its_bypass_ends() -> None:
    """The bypass's window is wall-clock time (as the collector sets and judges it), the
    unit's observations carry monotonic time: was a bug, the two were compared and a
    bypassed door still sounded the unit's siren."""
    bypass = Bypass(
        device=UNIT, sensor="pintu-utama", zone="perimeter", by="demo", reason="rusak",
        since=EPOCH + 5 * S, until=EPOCH + 60 * S,
    )  # fmt: skip
    state = heard(bypass)
    during = GUARD.stored(state, Kind.DOOR, "pintu-utama", "open", 10 * S, EPOCH + 10 * S)
    assert not GUARD.sounding(during.state) and during.camera  # its pictures are still kept
    after = GUARD.stored(state, Kind.DOOR, "pintu-utama", "open", 61 * S, EPOCH + 61 * S)
    assert GUARD.sounding(after.state)
    other = GUARD.stored(state, Kind.DOOR, "pintu-belakang", "open", 10 * S, EPOCH + 10 * S)
    assert GUARD.sounding(other.state)  # only the bypassed sensor is quiet


def test_disarming_the_units_zone_silences_its_siren_while_another_units_zone_stays_armed() -> None:
    """Found in review: the unit silenced its siren only when the site's most guarding zone
    stopped guarding, so disarming the perimeter with the vault (another unit's) still armed
    let an entry delay run out and the siren sound."""
    guard = Guard(Siren(180 * S), frozenset({"pintu-utama"}), UNIT)

    def site(perimeter: ArmingMode) -> ArmingState:
        base = heard().arming
        assert base is not None
        return base.model_copy(
            update={
                "entry_delay_s": 40,
                "zones": (
                    zone("default", ArmingMode.DISARMED),
                    zone("perimeter", perimeter, UNIT),
                    zone("brankas", ArmingMode.ARMED, "gudang-02"),
                ),
            }
        )

    armed = guard.heard(GuardState(), site(ArmingMode.ARMED))
    opened = guard.stored(armed, Kind.DOOR, "pintu-utama", "open", 0, EPOCH).state
    assert guard.deadline(opened) == 40 * S  # the entry delay runs
    disarmed = guard.heard(opened, site(ArmingMode.DISARMED))
    assert not guard.sounding(guard.tick(disarmed, 41 * S))
    still = guard.heard(opened, site(ArmingMode.ARMED))  # a repeat of the armed state
    assert guard.sounding(guard.tick(still, 41 * S))
