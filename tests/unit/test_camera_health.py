"""Camera health: silence is a fault that asks for a reopen, a uniform picture is a cover; both
are pure functions of frames and time, driven here without a camera and without sleeping."""

from __future__ import annotations

from agent.camera.health import Health, HealthState, Look, Reopen, look
from agent.camera.simulated import SimulatedCamera
from agent.domain.observation import Observation
from protocol.models import STATES, Kind

S = 1_000_000_000
MS = 1_000_000
LOGIC = Health(
    stall_ns=10 * S,
    reopen_max_ns=40 * S,
    cover_below=6.0,
    uncover_above=10.0,
    cover_frames=3,
    uncover_frames=2,
)
SCENE = Look(stddev=40.0, mean=110.0)
DARK = Look(stddev=1.0, mean=12.0)
MURKY = Look(stddev=8.0, mean=30.0)  # between the two thresholds


def states(out: list[Observation]) -> list[tuple[str, int]]:
    assert all(o.kind is Kind.CAMERA and o.sensor == "camera" for o in out)
    assert all(o.state in STATES[Kind.CAMERA] for o in out)
    return [(o.state, o.at_ns) for o in out]


def feed(
    state: HealthState, looks: list[Look], start_ns: int, step_ns: int = 500 * MS
) -> tuple[HealthState, list[tuple[str, int]]]:
    seen: list[tuple[str, int]] = []
    for i, one in enumerate(looks):
        state, out, action = LOGIC.frame(state, one, start_ns + i * step_ns)
        assert action is None
        seen += states(out)
    return state, seen


# --- stall ----------------------------------------------------------------------------------


def test_no_frame_for_the_stall_time_is_a_fault_with_a_reopen_then_frames_mean_recovered() -> None:
    state = LOGIC.initial(0)
    state, out, action = LOGIC.frame(state, SCENE, 1 * S)
    assert out == [] and action is None
    assert LOGIC.deadline(state) == 11 * S
    state, out, action = LOGIC.tick(state, 11 * S - 1)
    assert out == [] and action is None
    state, out, action = LOGIC.tick(state, 12 * S)
    assert states(out) == [("fault", 11 * S)]  # timed when the silence crossed the limit
    assert action == Reopen(12 * S, 1)
    state, out, action = LOGIC.tick(state, 13 * S)
    assert out == [] and action is None  # one fault, not one per tick
    state, out, action = LOGIC.frame(state, SCENE, 14 * S)
    assert states(out) == [("recovered", 14 * S)] and action is None
    state, out, _ = LOGIC.frame(state, SCENE, 14 * S + 500 * MS)
    assert out == []


def test_a_camera_that_stays_dead_is_reopened_with_a_doubling_back_off() -> None:
    state = LOGIC.initial(0)
    reopens = []
    seen: list[tuple[str, int]] = []
    for t in range(0, 200):
        state, out, action = LOGIC.tick(state, t * S)
        seen += states(out)
        if action is not None:
            reopens.append((action.at_ns // S, action.attempt))
    assert seen == [("fault", 10 * S)]
    # fault at 10 s; then +10, +20, +40 (the cap), +40 ...
    assert reopens == [(10, 1), (20, 2), (40, 3), (80, 4), (120, 5), (160, 6)]
    assert LOGIC.deadline(state) == 200 * S


def test_a_camera_that_never_delivered_a_frame_faults_from_its_start_time() -> None:
    state = LOGIC.initial(5 * S)
    _, out, action = LOGIC.tick(state, 15 * S)
    assert states(out) == [("fault", 15 * S)] and action == Reopen(15 * S, 1)


# --- cover ----------------------------------------------------------------------------------


def test_k_uniform_frames_in_a_row_are_covered_timed_at_the_first_of_them() -> None:
    state = LOGIC.initial(0)
    state, seen = feed(state, [SCENE, DARK, DARK], 0)
    assert seen == []
    state, seen = feed(state, [DARK], 1500 * MS)
    assert seen == [("covered", 500 * MS)]
    assert state.covered


def test_a_normal_frame_restarts_the_count_towards_covered() -> None:
    state, seen = feed(LOGIC.initial(0), [DARK, DARK, SCENE, DARK, DARK, SCENE], 0)
    assert seen == [] and not state.covered


def test_uncovered_needs_frames_clearly_above_the_upper_threshold() -> None:
    state, seen = feed(LOGIC.initial(0), [DARK] * 3, 0)
    assert seen == [("covered", 0)]
    # Murky frames are above the cover threshold but below the uncover one: still covered.
    state, seen = feed(state, [MURKY] * 5, 10 * S)
    assert seen == [] and state.covered
    state, seen = feed(state, [SCENE, MURKY, SCENE], 20 * S)
    assert seen == [] and state.covered  # the murky frame broke the run
    state, seen = feed(state, [SCENE], 21500 * MS)
    assert seen == [("uncovered", 21 * S)]
    assert not state.covered


def test_a_scene_hovering_around_one_threshold_does_not_flap() -> None:
    hover = [Look(5.5, 20.0), Look(6.5, 20.0)] * 20
    _, seen = feed(LOGIC.initial(0), hover, 0)
    assert seen == []


# --- with real frames from the simulated camera ----------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def mono_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * S)


def test_a_simulated_camera_covered_then_stalled_then_reopened_end_to_end() -> None:
    clock = FakeClock()
    cam = SimulatedCamera("pintu-utama", fps=2.0, mono_ns=clock.mono_ns, sleep=clock.sleep)
    logic = Health(stall_ns=5 * S, cover_frames=3, uncover_frames=2)
    cam.start()
    state = logic.initial(clock.now)
    seen: list[tuple[str, int]] = []
    reopened = 0

    def run(seconds: int) -> None:
        nonlocal state, reopened
        end = clock.now + seconds * S
        while clock.now < end:
            got = cam.frame(timeout_s=1.0)
            if got is not None:
                state, out, action = logic.frame(state, look(got.jpeg), got.mono_ns)
                seen.extend((o.state, o.at_ns // S) for o in out)
            state, out, action = logic.tick(state, clock.now)
            seen.extend((o.state, o.at_ns // S) for o in out)
            if action is not None:
                reopened += 1
                cam.stop()
                cam.start()

    run(3)
    cam.cover()
    run(3)
    cam.cover(False)
    run(3)
    assert [s for s, _ in seen] == ["covered", "uncovered"]
    seen.clear()
    cam.stall()
    run(8)
    assert [s for s, _ in seen] == ["fault"] and reopened == 1 and cam.starts == 2
    cam.stall(False)
    run(2)
    assert [s for s, _ in seen] == ["fault", "recovered"]
