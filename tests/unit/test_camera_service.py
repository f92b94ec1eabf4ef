"""The camera loop, driven turn by turn on a fake clock with the simulated camera: a trigger
becomes a set of real pictures that survive the store and the wire with their hashes; a stall
and a cover become camera events."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from agent.camera.evidence import Evidence, EvidenceSet, Role
from agent.camera.health import Health
from agent.camera.service import CameraLoop, Output
from agent.camera.simulated import SimulatedCamera
from agent.camera.store import EvidenceStore
from agent.domain.observation import Observation
from protocol.snapshot import BROKER_MAX_PACKET_SIZE, Reassembler, payload_budget, split
from protocol.topics import DeviceTopics

S = 1_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000 * S

    def mono_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * S)


def setup(
    wake: Callable[[], None] | None = None, clock: FakeClock | None = None
) -> tuple[FakeClock, SimulatedCamera, CameraLoop]:
    clock = clock or FakeClock()
    cam = SimulatedCamera(
        "pintu-utama",
        size=(320, 240),
        still_size=(1280, 960),
        fps=2.0,
        mono_ns=clock.mono_ns,
        sleep=clock.sleep,
    )
    loop = CameraLoop(
        cam,
        evidence=Evidence(before_ns=10 * S, after_ns=3 * S),
        health=Health(stall_ns=5 * S, cover_frames=3, uncover_frames=2),
        mono_ns=clock.mono_ns,
        wake=wake,
    )
    loop.open()
    return clock, cam, loop


def run(loop: CameraLoop, clock: FakeClock, seconds: float) -> list[Output]:
    end = clock.now + int(seconds * S)
    while clock.now < end:
        loop.step()
    out = []
    while not loop.outputs.empty():
        out.append(loop.outputs.get_nowait())
    return out


def test_a_trigger_yields_before_frames_a_still_and_after_frames_as_real_jpegs() -> None:
    clock, _, loop = setup()
    assert run(loop, clock, 12) == []
    opened_at = clock.now
    loop.trigger("door-event-1", opened_at)
    out = run(loop, clock, 4)
    sets = [o for o in out if isinstance(o, EvidenceSet)]
    assert len(sets) == 1 and len(out) == 1
    ev = sets[0]
    roles = [f.role for f in ev.files]
    assert roles.count(Role.STILL) == 1
    assert roles == [Role.BEFORE] * roles.index(Role.STILL) + [Role.STILL] + [Role.AFTER] * (
        len(roles) - roles.index(Role.STILL) - 1
    )
    assert roles.count(Role.BEFORE) == 20  # 10 s at 2 fps from the ring
    assert roles.count(Role.AFTER) == 6  # 3 s at 2 fps
    for f in ev.files:
        image = Image.open(io.BytesIO(f.jpeg))
        assert image.format == "JPEG"
        assert image.size == ((1280, 960) if f.role is Role.STILL else (320, 240))
        assert f.sha256 == hashlib.sha256(f.jpeg).hexdigest()
    assert ev.trigger_ns == opened_at


def test_a_trigger_inside_anothers_capture_gets_a_set_and_a_still_of_its_own() -> None:
    """A door, then its room's PIR 1 s later (#18): two sets, each keyed by its trigger, each
    with its own still taken at its own trigger (the intrusion's picture is its own)."""
    clock, _, loop = setup()
    run(loop, clock, 12)
    door_at = clock.now
    loop.trigger("door-open", door_at)
    out = run(loop, clock, 1)
    pir_at = clock.now
    loop.trigger("pir-motion", pir_at)
    out += run(loop, clock, 4)
    sets = {o.key: o for o in out if isinstance(o, EvidenceSet)}
    assert set(sets) == {"door-open", "pir-motion"}
    assert (sets["door-open"].trigger_ns, sets["pir-motion"].trigger_ns) == (door_at, pir_at)
    stills = {k: [f for f in s.files if f.role is Role.STILL] for k, s in sets.items()}
    (door_still,), (pir_still,) = stills["door-open"], stills["pir-motion"]
    assert door_still.sha256 != pir_still.sha256
    assert door_at <= door_still.mono_ns < pir_at <= pir_still.mono_ns


def test_the_pictures_of_a_trigger_survive_the_store_and_the_wire_with_their_hashes(
    tmp_path: Path,
) -> None:
    clock, _, loop = setup()
    run(loop, clock, 5)
    loop.trigger("door-event-1", clock.now)
    (ev,) = [o for o in run(loop, clock, 4) if isinstance(o, EvidenceSet)]
    store = EvidenceStore(tmp_path, max_bytes=50 * 1024 * 1024)
    kept = store.put(ev)
    assert kept.refused == () and kept.hashes == ev.hashes
    event_id = "0123456789abcdef0123456789abcdef"
    topic = DeviceTopics("bangka-barat", "pintu-1").snapshot(event_id)
    budget = payload_budget(BROKER_MAX_PACKET_SIZE, topic)
    wire = [
        p
        for f in kept.kept
        for p in split(event_id, f.sha256, f.role.value, store.read(f.sha256), budget)
    ]
    re = Reassembler()
    arrived = [a for a in (re.feed(event_id, p) for p in wire) if a is not None]
    assert tuple(a.sha256 for a in arrived) == ev.hashes
    assert all(hashlib.sha256(a.data).hexdigest() == a.sha256 for a in arrived)
    store.close()


def test_a_stalled_camera_is_a_fault_then_reopened_then_recovered() -> None:
    clock, cam, loop = setup()
    run(loop, clock, 3)
    cam.stall()
    out = run(loop, clock, 7)
    assert [o.state for o in out if isinstance(o, Observation)] == ["fault"]
    assert loop.reopens == 1 and cam.starts == 2 and cam.stops == 1
    cam.stall(False)
    out = run(loop, clock, 2)
    assert [o.state for o in out if isinstance(o, Observation)] == ["recovered"]


def test_the_agent_is_woken_when_there_is_something_to_drain() -> None:
    clock = FakeClock()
    wakes: list[int] = []
    _, cam, loop = setup(wake=lambda: wakes.append(clock.now), clock=clock)
    run(loop, clock, 3)
    assert wakes == []
    cam.cover()
    run(loop, clock, 3)
    assert len(wakes) == 1


def test_a_covered_camera_is_reported_and_so_is_its_uncovering() -> None:
    clock, cam, loop = setup()
    run(loop, clock, 2)
    cam.cover()
    out = run(loop, clock, 3)
    assert [(o.sensor, o.state) for o in out if isinstance(o, Observation)] == [
        ("camera", "covered")
    ]
    cam.cover(False)
    out = run(loop, clock, 2)
    assert [o.state for o in out if isinstance(o, Observation)] == ["uncovered"]


def test_a_trigger_while_the_camera_is_stalled_closes_without_a_still() -> None:
    clock, cam, loop = setup()
    run(loop, clock, 3)
    cam.stall()
    loop.trigger("door-event-2", clock.now)
    out = run(loop, clock, 14)
    sets = [o for o in out if isinstance(o, EvidenceSet)]
    assert len(sets) == 1
    assert not sets[0].still_taken
    assert {f.role for f in sets[0].files} == {Role.BEFORE}
