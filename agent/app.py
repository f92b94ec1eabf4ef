"""Composition root of the unit and its main loop: sensors -> pure logic -> signed outbox ->
MQTT link. Each job lives in its own module; this one wires them and keeps their order:
an event is stored in the outbox, then the siren and camera react, then the link sends it
(and the outbox marks it delivered on its PUBACK)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from cryptography import x509

from agent import arming_file, host
from agent.camera.live import Lease, LiveTap
from agent.camera.service import CameraLoop
from agent.camera.store import EvidenceStore
from agent.camera.wiring import camera_loop
from agent.clock import Clock
from agent.command_gate import CommandGate
from agent.commands import Commands
from agent.config import AgentConfig, SensorConfig
from agent.domain.checkpoint import Schedule, reading
from agent.domain.door import Door
from agent.domain.guard import Guard, GuardState
from agent.domain.motion import Motion
from agent.domain.observation import Observation
from agent.domain.siren import Siren
from agent.domain.switch import patrol_button, tamper
from agent.evidence_upload import EvidenceUpload
from agent.heartbeat import Reports
from agent.identity import certificate_not_after, create_private_key, load_private_key, make_signer
from agent.outbox import NewEvent, Outbox
from agent.outputs import SirenOutput
from agent.publisher import Publisher
from agent.recorder import Recorder
from agent.sensors import Edge, SensorBank
from kernel.mqtt import Will
from kernel.units import MB, MS, S
from protocol import topics
from protocol.alerting import ArmingState
from protocol.models import CHECKPOINT_SENSOR, Checkpoint, Heartbeat, Kind

log = logging.getLogger("jaga.agent")


class Logic(Protocol):
    def initial(self, active: bool, now_ns: int) -> tuple[Any, list[Observation]]: ...
    def edge(self, state: Any, active: bool, now_ns: int) -> tuple[Any, list[Observation]]: ...
    def tick(self, state: Any, now_ns: int) -> tuple[Any, list[Observation]]: ...
    def deadline(self, state: Any) -> int | None: ...


def logic_for(sensor: SensorConfig) -> Logic:
    """The pure state machine that interprets one wired input."""
    debounce_ns = sensor.debounce_ms * MS
    if sensor.kind == "door":
        return Door(sensor.name, debounce_ns, int(sensor.held_open_s * S))
    if sensor.kind == "motion":
        return Motion(sensor.name, debounce_ns, int(sensor.retrigger_s * S))
    if sensor.kind == "tamper":
        return tamper(sensor.name, debounce_ns)
    return patrol_button(sensor.name, debounce_ns)


class Agent:
    """One unit: wires its parts and runs the loop that turns edges and deadlines into events."""

    def __init__(
        self, config: AgentConfig, pin_factory: Any, *, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.topics = topics.DeviceTopics(config.site, config.device)
        self.boot_id = host.boot_id()
        tls = config.broker.tls
        if tls is None and not config.key_path.exists():
            log.warning("no TLS configured: creating a local signing key at %s", config.key_path)
            key = create_private_key(config.key_path)
        else:
            key = load_private_key(config.key_path)
        self.reports = Reports(
            config.site,
            config.device,
            self.boot_id,
            tuple(s.name for s in config.sensors),
            config.heartbeat_s,
            config.data_dir,
            certificate_not_after(tls.cert) if tls else None,
        )
        gate = None
        if tls is not None:
            ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
            gate = CommandGate(ca, config.data_dir / "commands.sqlite3")
        self.outbox = Outbox(config.data_dir / "outbox.sqlite3")
        self.recorder = Recorder(
            self.outbox,
            site=config.site,
            device=config.device,
            boot_id=self.boot_id,
            topic=self.topics.event,
            signer=make_signer(key),
            stored=lambda: self.publisher.wake(),
        )
        self.sensors = SensorBank(config.sensors, pin_factory)
        self._logic = {s.name: logic_for(s) for s in config.sensors}
        self._state: dict[str, Any] = {}
        self.checkpoints = Schedule(config.checkpoint_s * S)
        self._schedule = self.checkpoints.initial(self.clock.mono_ns())
        self.loop_heartbeat = time.monotonic()
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        """Messages the link received (commands, the site's arming), for the main loop."""
        siren = Siren(int(config.siren.seconds * S)) if config.siren else None
        motion_always = config.camera is None or config.camera.motion == "always"
        self.guard = Guard(siren, frozenset(config.entry_doors), config.device, motion_always)
        self._arming_path = config.data_dir / arming_file.NAME
        self._guard_state = GuardState(arming_file.load(self._arming_path))
        self.siren = SirenOutput(config.siren, pin_factory) if config.siren else None
        self.camera: CameraLoop | None = None
        self.evidence: EvidenceStore | None = None
        self.pictures: EvidenceUpload | None = None
        self.live: LiveTap | None = None
        self._camera_stop = threading.Event()
        if config.camera is not None:
            self.camera = camera_loop(config.camera, config.device, self.clock, self._wake)
            self.live = LiveTap(
                lambda jpeg: self.publisher.publish_live(self.topics.live, jpeg),
                mono_ns=self.clock.mono_ns,
                wall_ns=self.clock.wall_ns,
                lease=Lease(max_fps=config.camera.fps),
            )
            self.camera.tap = self.live.offer
            self.evidence = EvidenceStore(
                config.data_dir, max_bytes=config.camera.evidence_max_mb * MB
            )
            self.pictures = EvidenceUpload(
                self.evidence,
                self.recorder,
                self.topics,
                max_packet_size=config.camera.max_packet_size,
            )
        self.publisher = Publisher(
            config.broker,
            self.outbox,
            client_id=f"jaga-{config.site}-{config.device}",
            will=Will(self.topics.status, self.reports.status(online=False).to_json()),
            birth=lambda: (self.topics.status, self.reports.status(online=True).to_json()),
            subscriptions=[self.topics.cmd_filter, topics.arming(config.site)],
            on_command=self._heard,
        )
        self.commands = Commands(
            gate,
            self.outbox,
            pictures=self.pictures,
            camera=self.camera,
            rewind=self.publisher.rewind,
            live=self.live,
        )

    # what the service and the tests read ----------------------------------------------------

    @property
    def arming(self) -> ArmingState | None:
        """The last arming state heard (kept on disk across restarts)."""
        return self._guard_state.arming

    @property
    def armed(self) -> bool:
        """Doors and motion are intrusions now (armed, or an entry delay running)."""
        return self._guard_state.guarding

    @property
    def disk_full(self) -> bool:
        return self.recorder.disk_full

    @property
    def events_stored(self) -> int:
        return self.recorder.events_stored

    # the main loop ----------------------------------------------------------------------

    def start(self) -> None:
        """Read every input once, record the boot, and open the link (which may stay down)."""
        now = self.clock.mono_ns()
        self._store([Observation("system", Kind.SYSTEM, "boot", now)])
        for name, logic in self._logic.items():
            self._state[name], obs = logic.initial(self.sensors.read(name), now)
            self._store(obs)
        self._schedule = self.checkpoints.initial(now)
        self._checkpoint(now)
        if self.camera is not None:
            self.camera.open()
            threading.Thread(
                target=self.camera.run, args=(self._camera_stop,), name="camera", daemon=True
            ).start()
        self.publisher.start()

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        """Until stop is set: wait for an edge or the next deadline, store what it means."""
        next_beat = self.clock.mono_ns()
        connects = 0
        while not stop.is_set():
            now = self.clock.mono_ns()
            if self.publisher.stats.connects != connects and self.publisher.stats.connected:
                # A heartbeat right after each connect: the collector learns the interval and
                # the last seq at once, not one (long) interval later.
                connects = self.publisher.stats.connects
                next_beat = now
            if now >= next_beat:
                self.publisher.publish_transient(self.topics.heartbeat, self.heartbeat().to_json())
                next_beat = now + self.config.heartbeat_s * S
            deadlines = [d for d in (self._deadline(), next_beat) if d is not None]
            timeout = max(0.0, (min(deadlines) - self.clock.mono_ns()) / S)
            try:
                edge = self.sensors.edges.get(timeout=min(timeout, 1.0))
            except queue.Empty:
                edge = None
            self.step(edge)
            self._drain_inbox()
            self.loop_heartbeat = time.monotonic()
            if on_tick is not None:
                on_tick()

    def step(self, edge: Edge | None) -> None:
        """Feed one edge (or none) to the logic and run every due deadline."""
        now = self.clock.mono_ns()
        if edge is not None and edge.sensor in self._logic:
            logic = self._logic[edge.sensor]
            self._state[edge.sensor], obs = logic.edge(
                self._state[edge.sensor], edge.active, edge.at_ns
            )
            self._store(obs)
        for name, logic in self._logic.items():
            self._state[name], obs = logic.tick(self._state[name], now)
            self._store(obs)
        self._checkpoint(now)
        self._drain_camera()
        self._drive_siren()

    def _deadline(self) -> int | None:
        times = [logic.deadline(self._state[n]) for n, logic in self._logic.items()]
        times.append(self.guard.deadline(self._guard_state))
        times.append(self.checkpoints.deadline(self._schedule))
        return min((t for t in times if t is not None), default=None)

    def _store(self, observations: list[Observation]) -> None:
        """Each observation: stored in the outbox first, then the siren and the camera react."""
        for obs in observations:
            new = NewEvent(obs.sensor, obs.kind, obs.state, 0, obs.at_ns, False)
            appended = self.recorder.record(new, self.clock)
            if appended is None:
                continue
            reaction = self.guard.stored(
                self._guard_state,
                obs.kind,
                obs.sensor,
                obs.state,
                obs.at_ns,
                appended.event.ts,
                linked=self.publisher.stats.connected,
            )
            self._guard_state = reaction.state
            self._drive_siren()
            if self.camera is not None and reaction.camera:
                self.camera.trigger(appended.event.id, obs.at_ns)

    def _checkpoint(self, now: int) -> None:
        """When one is due: sign into the chain how every input and the arming stand now."""
        self._schedule, due = self.checkpoints.tick(self._schedule, now)
        if not due:
            return
        sensors = {n: r for n, lg in self._logic.items() if (r := reading(lg, self._state[n]))}
        arming = self._guard_state.arming
        body = Checkpoint(
            interval_s=self.config.checkpoint_s, uptime_s=host.uptime_s(), sensors=sensors
        )
        state = arming.state.value if arming is not None else "unknown"
        new = NewEvent(CHECKPOINT_SENSOR, Kind.CHECKPOINT, state, 0, now, False, checkpoint=body)
        self.recorder.record(new, self.clock)

    def _drive_siren(self) -> None:
        self._guard_state = self.guard.tick(self._guard_state, self.clock.mono_ns())
        if self.siren is not None:
            self.siren.drive(self.guard.sounding(self._guard_state))

    def _drain_camera(self) -> None:
        if self.camera is None:
            return
        while True:
            try:
                item = self.camera.outputs.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Observation):
                self._store([item])
            elif self.pictures is not None:
                self.pictures.first(item, self.clock)

    def _heard(self, topic: str, payload: bytes) -> None:
        """A message for the main loop (a command, the site's arming), from the link's thread:
        queued, and the loop woken to act on it now; it used to wait for the next edge or
        deadline (up to a second), and an edge in between was judged on the older arming."""
        self.inbox.put((topic, payload))
        self._wake()

    def _wake(self) -> None:
        """Wake the main loop from another thread (the link's, the camera's): it acts now."""
        self.sensors.edges.put(None)

    def _drain_inbox(self) -> None:
        while True:
            try:
                topic, payload = self.inbox.get_nowait()
            except queue.Empty:
                return
            if topic == topics.arming(self.config.site):
                self._on_arming(payload)
                continue
            try:
                where = topics.parse_device_topic(topic)
            except topics.TopicError as exc:
                log.warning("message on %s ignored: %s", topic[:120], exc)
                continue
            if where.channel is not topics.Channel.CMD or where.arg is None:
                continue  # only this unit's own cmd/<name> is subscribed besides arming
            answer = self.commands.carry_out(where.arg, payload, self.clock)
            (log.info if answer.ok else log.warning)("command %s: %s", answer.name, answer.detail)
            result = answer.result(self.clock.wall_ns())
            self.publisher.publish_transient(self.topics.cmd_result, result.to_json())

    def _on_arming(self, payload: bytes) -> None:
        """The site's arming state: kept on disk first, then the siren obeys it."""
        state = arming_file.heard(payload, self.config.site)
        if state is None:
            return
        was = self.armed
        arming_file.save(self._arming_path, state)
        self._guard_state = self.guard.heard(self._guard_state, state)
        self._drive_siren()
        if was != self.armed:
            log.info("site is now %s (by %s, %s)", state.state.value, state.by, state.how.value)

    def heartbeat(self) -> Heartbeat:
        """Upkeep that writes (the disk reserve, delivered pictures), then the figures."""
        self.recorder.recheck_disk()
        if self.pictures is not None:
            self.pictures.settle()
        return self.reports.heartbeat(
            wall_ns=self.clock.wall_ns(),
            clock_synced=self.clock.synced(),
            outbox=self.outbox,
            disk_full=self.recorder.disk_full,
            connected_since=self.publisher.stats.connected_since,
            evidence=self.pictures.pressure() if self.pictures is not None else None,
        )

    # stopping ---------------------------------------------------------------------------

    def flush(self, timeout_s: float) -> int:
        """Give the link up to timeout_s to empty the outbox; returns what is left."""
        deadline = time.monotonic() + timeout_s
        while (left := self.outbox.depth()) and time.monotonic() < deadline:
            self.publisher.wake()
            time.sleep(0.05)
        return left

    def finish_pictures(self, timeout_s: float) -> None:
        """Let the camera complete the evidence of triggers already seen, and store it."""
        if self.camera is None:
            return
        deadline = time.monotonic() + timeout_s
        while self.camera.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        self._drain_camera()

    def close(self, drain_s: float = 0.0) -> None:
        if drain_s > 0 and self.config.camera is not None:
            self.finish_pictures(self.config.camera.after_s + 2.0)
        if drain_s > 0:
            left = self.flush(drain_s)
            if left:
                log.warning("stopping with %d messages in the outbox; they go at next start", left)
        self.publisher.stop()
        self.commands.close()
        self._camera_stop.set()
        if self.camera is not None:
            self.camera.close()
        if self.evidence is not None:
            self.evidence.close()
        if self.siren is not None:
            self.siren.close()
        self.sensors.close()
        self.outbox.close()
