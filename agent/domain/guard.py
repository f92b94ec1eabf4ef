"""Arming on the unit: which events are intrusions (the siren, after an entry door's delay),
judged from the last arming state heard, and which keep pictures (every event the collector
could alarm on, whatever the unit has heard). Pure: time is passed in, so a unit cut off from
the network alarms by the same rules the tests prove."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from agent.domain.siren import Siren, SirenState
from kernel.units import S
from protocol.alerting import ArmingMode, ArmingState, ZoneArming
from protocol.models import Kind

INTRUSIONS = frozenset({(Kind.DOOR, "open"), (Kind.MOTION, "motion")})
"""Events that are intrusions while the site is guarded."""
PICTURED = frozenset(
    {
        (Kind.DOOR, "open"),
        (Kind.MOTION, "motion"),
        (Kind.TAMPER, "tampered"),
        (Kind.CAMERA, "covered"),
    }
)
"""Events whose pictures are kept, armed or not: every trigger of an alarm (forced door,
intrusion, tamper), each with its own set, its still signed for it. Not judged by the arming
the unit has heard: that is the collector's call, made on its own state and history, and the
unit's view lags it (the retained message on its way, a unit offline, a clock off, an exit
delay just over). Motion judged by the unit's view left an intrusion inside a door's capture
without a still of its own (#18). A PIR's `motion` starts a burst (`retrigger_s` of quiet
ends it), so a busy room by day costs one set per burst."""


def guarding(arming: ArmingState | None) -> bool:
    """Doors and motion are intrusions now (armed, or an entry delay running); unknown is not."""
    return arming is not None and arming.state.guarding


def intrusion_delay_ns(
    kind: Kind,
    sensor: str,
    state: str,
    arming: ArmingState | None,
    entry_doors: Collection[str],
    device: str = "",
    wall_ns: int = 0,
) -> int | None:
    """How long the siren waits for this event: None when it is no intrusion (its zone is not
    guarding, or the sensor is bypassed), 0 for at once, the site's entry delay for an entry
    door (time to disarm on the way in). device: this unit (its sensors' zones); "": the
    site's top-level state. wall_ns: the event's wall-clock time (its signed `ts`), the clock
    a bypass's since/until are on."""
    if arming is None or (kind, state) not in INTRUSIONS:
        return None
    mode = arming.mode_for(device, sensor, wall_ns) if device else arming.state
    if mode is None or not mode.guarding:
        return None
    if kind is Kind.DOOR and sensor in entry_doors:
        return arming.entry_delay_s * S
    return 0


def triggers_camera(kind: Kind, state: str) -> bool:
    """Door opened, motion, lid opened, camera covered: keep the pictures around it."""
    return (kind, state) in PICTURED


SCHEDULE_MARGIN_NS = 60 * S
"""How early before a scheduled arming motion counts as maybe guarded (clocks differ)."""


def maybe_guarded(
    arming: ArmingState | None, device: str, sensor: str, wall_ns: int, linked: bool
) -> bool:
    """Could the collector judge this sensor's motion an intrusion, for all the unit knows?
    Yes when it has heard nothing, or hears nothing now (its link is down), when the sensor's
    zone guards, when its exit delay runs (the collector counts from its end, the unit hears
    of it a moment later), or when a scheduled arming is due within a minute or past; no
    when the sensor is bypassed. `[camera] motion = "guarded"` pictures motion only then."""
    if arming is None or not linked:
        return True
    mode = arming.mode_for(device, sensor, wall_ns) if device else arming.state
    if mode is None:
        return False
    if mode.guarding or mode is ArmingMode.ARMING:
        return True
    plan: ArmingState | ZoneArming = (arming.zone_of(device, sensor) if device else None) or arming
    at, to = plan.next_change, plan.next_state
    return at is not None and to is not None and to.guarding and wall_ns >= at - SCHEDULE_MARGIN_NS


@dataclass(frozen=True, slots=True)
class GuardState:
    """The last arming state heard (None: never heard) and the siren's own state."""

    arming: ArmingState | None = None
    siren: SirenState = field(default_factory=SirenState)

    @property
    def guarding(self) -> bool:
        return guarding(self.arming)


@dataclass(frozen=True, slots=True)
class Reaction:
    """What one stored event asks of the unit itself, before the network hears of it."""

    state: GuardState
    camera: bool
    """Keep the pictures around the event (trigger the camera), armed or not."""


@dataclass(frozen=True, slots=True)
class Guard:
    """The unit's arming policy; `siren` is None on a unit without one (pictures still kept)."""

    siren: Siren | None
    entry_doors: frozenset[str] = frozenset()
    device: str = ""  # this unit: its sensors follow their zones' arming (#18)
    motion_always: bool = True
    """Picture every motion (the default), or only motion that may be an intrusion
    (maybe_guarded: `[camera] motion = "guarded"`, for a metered SIM)."""

    def heard(self, state: GuardState, arming: ArmingState) -> GuardState:
        """A new arming state of this site; a disarm of every zone this unit's sensors are in
        silences the siren and any entry delay (another unit's zone may stay armed)."""
        state = replace(state, arming=arming)
        if self.siren is not None and not arming.guards_unit(self.device):
            state = replace(state, siren=self.siren.disarm(state.siren))
        return state

    def stored(
        self,
        state: GuardState,
        kind: Kind,
        sensor: str,
        value: str,
        at_ns: int,
        wall_ns: int,
        linked: bool = True,
    ) -> Reaction:
        """An event is in the outbox: sound the siren for an intrusion, keep its pictures.
        at_ns: monotonic (the siren's delays); wall_ns: the event's signed wall-clock time,
        which a bypass's window is judged on, as the collector judges it; linked: the unit
        hears the broker now."""
        arming = state.arming
        delay = intrusion_delay_ns(
            kind, sensor, value, arming, self.entry_doors, self.device, wall_ns
        )
        if self.siren is not None and delay is not None:
            state = replace(state, siren=self.siren.intrusion(state.siren, at_ns, delay))
        camera = triggers_camera(kind, value) and (
            self.motion_always
            or kind is not Kind.MOTION
            or maybe_guarded(arming, self.device, sensor, wall_ns, linked)
        )
        return Reaction(state, camera)

    def tick(self, state: GuardState, now_ns: int) -> GuardState:
        """An entry delay runs out (the siren sounds) or the siren's time is up."""
        if self.siren is None:
            return state
        return replace(state, siren=self.siren.tick(state.siren, now_ns))

    def sounding(self, state: GuardState) -> bool:
        return self.siren is not None and self.siren.sounding(state.siren)

    def deadline(self, state: GuardState) -> int | None:
        """The next time tick() has something to do; None when nothing is waiting."""
        return None if self.siren is None else self.siren.deadline(state.siren)
