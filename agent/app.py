"""Composition root of the unit: sensors -> pure logic -> signed outbox -> MQTT link."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from gpiozero import DigitalOutputDevice
from PIL import Image

from agent import __version__, host
from agent.camera.base import Camera
from agent.camera.evidence import Evidence, EvidenceSet, roles_by_size
from agent.camera.health import Health
from agent.camera.picamera2_adapter import Picamera2Camera
from agent.camera.ring import FrameRing
from agent.camera.service import CameraLoop
from agent.camera.simulated import SimulatedCamera
from agent.camera.store import EvidenceStore
from agent.command_gate import CommandGate
from agent.config import AgentConfig, CameraConfig, SensorConfig
from agent.domain.door import Door
from agent.domain.motion import Motion
from agent.domain.observation import Observation
from agent.domain.siren import Siren, SirenState
from agent.domain.switch import patrol_button, tamper
from agent.identity import (
    certificate_not_after,
    create_private_key,
    days_left,
    load_private_key,
    make_signer,
)
from agent.outbox import Attachments, NewEvent, Outbox, OutboxFull
from agent.publisher import Publisher, Will
from agent.sensors import Edge, SensorBank
from protocol import models, topics
from protocol.alerting import ArmingState
from protocol.commands import CommandRefused, CommandResult, Resend, Snapshot
from protocol.models import Event, Heartbeat, Kind, Status
from protocol.snapshot import ChunkRole, payload_budget, split

log = logging.getLogger("jaga.agent")

MS = 1_000_000
S = 1_000_000_000
MB = 1024 * 1024
PICTURE_EVENTS_PER_RESEND = 16
"""Camera events whose pictures one resend re-chunks: the work runs on the main loop (which
reads the sensors), so it is bounded; the collector asks again for any still missing."""


@dataclass(frozen=True, slots=True)
class PicturesAgain:
    """What a resend did with the pictures of the camera events it covered."""

    events: int = 0
    queued: int = 0
    """Pictures chunked again from the evidence store into the outbox."""
    waiting: int = 0
    """Pictures whose chunks were still in the outbox: nothing to do."""
    gone: tuple[str, ...] = ()
    """Pictures the evidence store no longer has (as event id/sha256)."""
    deferred: int = 0
    """Camera events past PICTURE_EVENTS_PER_RESEND, left for the collector's later asks."""
    error: str | None = None

    def describe(self) -> str:
        if not self.events:
            return ""
        text = f"; pictures of {self.events} camera event(s): {self.queued} queued again"
        if self.waiting:
            text += f", {self.waiting} still queued"
        if self.gone:
            text += f", {len(self.gone)} no longer kept on the unit"
        if self.deferred:
            text += f"; {self.deferred} more camera event(s) left for later asks"
        if self.error:
            text += f", {self.error}"
        return text


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


@dataclass(frozen=True, slots=True)
class Clock:
    """Both clocks of the unit, passed in so tests and the simulator can own time."""

    mono_ns: Callable[[], int] = time.monotonic_ns
    wall_ns: Callable[[], int] = time.time_ns
    synced: Callable[[], bool] = host.clock_synced


class Agent:
    """One unit: owns the main loop that turns edges and deadlines into stored events."""

    def __init__(
        self, config: AgentConfig, pin_factory: Any, *, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.topics = topics.DeviceTopics(config.site, config.device)
        self.boot_id = host.boot_id()
        key_path = config.key_path
        if config.broker.tls is None and not key_path.exists():
            log.warning("no TLS configured: creating a local signing key at %s", key_path)
            self._key = create_private_key(key_path)
        else:
            self._key = load_private_key(key_path)
        self._signer = make_signer(self._key)
        self._cert_not_after = (
            certificate_not_after(config.broker.tls.cert) if config.broker.tls else None
        )
        self._commands = (
            CommandGate(
                x509.load_pem_x509_certificate(config.broker.tls.ca.read_bytes()),
                config.data_dir / "commands.sqlite3",
            )
            if config.broker.tls is not None
            else None
        )
        self.outbox = Outbox(config.data_dir / "outbox.sqlite3")
        self.sensors = SensorBank(config.sensors, pin_factory)
        self._logic = {s.name: logic_for(s) for s in config.sensors}
        self._state: dict[str, Any] = {}
        self.disk_full = False
        self._dropping = False
        self.events_stored = 0
        self.loop_heartbeat = time.monotonic()
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.arming: ArmingState | None = self._load_arming()
        self.siren = Siren(int(config.siren.seconds * S)) if config.siren else None
        self._siren_state = SirenState()
        self._siren_out: Any = None
        if config.siren is not None:
            self._siren_out = DigitalOutputDevice(
                config.siren.pin,
                active_high=config.siren.active_high,
                initial_value=False,
                pin_factory=pin_factory,
            )
        self.camera: CameraLoop | None = None
        self._gone_reported: set[tuple[str, str]] = set()
        """Pictures a resend asked for that the store no longer has, logged once each."""
        self.evidence: EvidenceStore | None = None
        self._camera_stop = threading.Event()
        if config.camera is not None:
            self.camera, self.evidence = self._make_camera(config.camera)
        self.publisher = Publisher(
            config.broker,
            self.outbox,
            client_id=f"jaga-{config.site}-{config.device}",
            will=Will(self.topics.status, self._status("offline").to_json()),
            birth=lambda: (self.topics.status, self._status("online").to_json()),
            subscriptions=[self.topics.cmd_filter, topics.arming(config.site)],
            on_command=lambda topic, payload: self.commands.put((topic, payload)),
        )

    def _make_camera(self, cfg: CameraConfig) -> tuple[CameraLoop, EvidenceStore]:
        camera: Camera
        if cfg.kind == "simulated":
            camera = SimulatedCamera(
                self.config.device,
                size=cfg.frame_size,
                still_size=cfg.still_size or (1280, 720),
                fps=cfg.fps,
                quality=cfg.quality,
                still_quality=cfg.still_quality,
                mono_ns=self.clock.mono_ns,
                wall_ns=self.clock.wall_ns,
            )
        else:
            camera = Picamera2Camera(
                size=cfg.frame_size,
                fps=cfg.fps,
                still_size=cfg.still_size,
                quality=cfg.quality,
                still_quality=cfg.still_quality,
                camera_num=cfg.camera_num,
                mono_ns=self.clock.mono_ns,
            )
        loop = CameraLoop(
            camera,
            ring=FrameRing.for_window(cfg.fps, cfg.ring_seconds, int(cfg.ring_max_mb * MB)),
            evidence=Evidence(before_ns=int(cfg.ring_seconds * S), after_ns=int(cfg.after_s * S)),
            health=Health(
                stall_ns=int(cfg.stall_s * S),
                cover_below=cfg.cover_stddev,
                uncover_above=cfg.uncover_stddev,
                cover_frames=cfg.cover_frames,
                uncover_frames=cfg.uncover_frames,
            ),
            mono_ns=self.clock.mono_ns,
            wake=lambda: self.sensors.edges.put(None),
        )
        store = EvidenceStore(self.config.data_dir, max_bytes=cfg.evidence_max_mb * MB)
        return loop, store

    # arming and the siren ----------------------------------------------------------------

    @property
    def armed(self) -> bool:
        """Doors and motion are intrusions now (armed, or an entry delay running)."""
        return self.arming is not None and self.arming.state.guarding

    def _arming_path(self) -> Path:
        return self.config.data_dir / "arming.json"

    def _load_arming(self) -> ArmingState | None:
        """The last arming state heard, so a unit cut off from the network still knows."""
        try:
            return models.parse(ArmingState, self._arming_path().read_bytes())
        except FileNotFoundError:
            return None
        except models.WireError as exc:
            log.warning("ignoring unreadable %s: %s", self._arming_path(), exc)
            return None

    def _on_arming(self, payload: bytes) -> None:
        if not payload:
            return
        try:
            state = models.parse(ArmingState, payload)
        except models.WireError as exc:
            log.warning("arming message refused: %s", exc)
            return
        if state.site != self.config.site:
            return
        was = self.armed
        self.arming = state
        path = self._arming_path()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(state.to_json())
        os.replace(tmp, path)
        if not self.armed and self.siren is not None:
            self._siren_state = self.siren.disarm(self._siren_state)
            self._drive_siren()
        if was != self.armed:
            log.info("site is now %s (by %s, %s)", state.state.value, state.by, state.how.value)

    def _intrusion(self, event: Event, at_ns: int) -> None:
        """Door or motion while armed: sound the siren now (or after an entry door's delay)."""
        if self.siren is None or not self.armed or self.arming is None:
            return
        if (event.kind, event.state) not in {(Kind.DOOR, "open"), (Kind.MOTION, "motion")}:
            return
        entry = event.kind is Kind.DOOR and event.sensor in self.config.entry_doors
        delay = self.arming.entry_delay_s * S if entry else 0
        self._siren_state = self.siren.intrusion(self._siren_state, at_ns, delay)
        self._drive_siren()

    def _drive_siren(self) -> None:
        if self.siren is None:
            return
        self._siren_state = self.siren.tick(self._siren_state, self.clock.mono_ns())
        on = self.siren.sounding(self._siren_state)
        if bool(self._siren_out.value) != on:
            log.warning("siren %s", "ON" if on else "off")
            self._siren_out.value = on

    # status and heartbeat ----------------------------------------------------------------

    def _status(self, state: str) -> Status:
        not_after = self._cert_not_after
        return Status(
            site=self.config.site,
            device=self.config.device,
            state="online" if state == "online" else "offline",
            boot_id=self.boot_id,
            version=__version__ if state == "online" else None,
            sensors=tuple(s.name for s in self.config.sensors) if state == "online" else None,
            cert_not_after=int(not_after.timestamp()) if not_after else None,
        )

    def heartbeat(self) -> Heartbeat:
        if self.disk_full and self.outbox.restore_reserve():
            log.info("outbox disk has room again")
            self.disk_full = False
        last_seq, head = self.outbox.chain()
        since = self.publisher.stats.connected_since
        return Heartbeat(
            site=self.config.site,
            device=self.config.device,
            ts=self.clock.wall_ns(),
            boot_id=self.boot_id,
            uptime_s=host.uptime_s(),
            interval_s=self.config.heartbeat_s,
            cpu_temp_c=host.cpu_temp_c(),
            disk_free_mb=host.disk_free_mb(self.config.data_dir),
            disk_full=self.disk_full,
            outbox_depth=self.outbox.depth(),
            clock_synced=self.clock.synced(),
            last_seq=last_seq,
            chain_head=head,
            cert_days_left=days_left(self._cert_not_after),
            undervoltage=host.undervoltage(),
            connected_since_s=int(time.monotonic() - since) if since is not None else None,
            **self._evidence_figures(),
        )

    def _evidence_figures(self) -> dict[str, Any]:
        if self.evidence is None:
            return {}
        self.evidence.settle(self.outbox.undelivered)
        p = self.evidence.pressure()
        return {
            "evidence_used_mb": p.used_bytes // MB,
            "evidence_held_mb": p.held_bytes // MB,
            "evidence_refused": p.refused_files,
            "evidence_full": p.full,
        }

    # the main loop -----------------------------------------------------------------------

    def start(self) -> None:
        """Read every input once, record the boot, and open the link (which may stay down)."""
        now = self.clock.mono_ns()
        self._store([Observation("system", Kind.SYSTEM, "boot", now)])
        for name, logic in self._logic.items():
            self._state[name], obs = logic.initial(self.sensors.read(name), now)
            self._store(obs)
        if self.camera is not None:
            self.camera.open()
            threading.Thread(
                target=self.camera.run, args=(self._camera_stop,), name="camera", daemon=True
            ).start()
        self.publisher.start()

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        """Until stop is set: wait for an edge or the next deadline, store what it means."""
        next_beat = self.clock.mono_ns()
        while not stop.is_set():
            now = self.clock.mono_ns()
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
            self._drain_commands()
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
        self._drain_camera()
        if self.siren is not None:
            self._drive_siren()

    def _deadline(self) -> int | None:
        times = [logic.deadline(self._state[n]) for n, logic in self._logic.items()]
        if self.siren is not None:
            times.append(self.siren.deadline(self._siren_state))
        return min((t for t in times if t is not None), default=None)

    def _store(self, observations: list[Observation]) -> None:
        for obs in observations:
            event = self._store_event(
                NewEvent(obs.sensor, obs.kind, obs.state, 0, obs.at_ns, False)
            )
            if event is None:
                continue
            self._intrusion(event, obs.at_ns)
            if self.camera is not None and self._triggers_camera(event):
                self.camera.trigger(event.id, obs.at_ns)

    def _triggers_camera(self, event: Event) -> bool:
        """Door opened, lid opened, motion while armed: keep the pictures around it."""
        return (event.kind, event.state) in {
            (Kind.DOOR, "open"),
            (Kind.TAMPER, "tampered"),
        } or (event.kind is Kind.MOTION and event.state == "motion" and self.armed)

    def _store_event(self, new: NewEvent, attachments: Attachments | None = None) -> Event | None:
        """Sign and store one event; None when the disk refused it (flagged, logged once)."""
        mono_now, wall_now, synced = self.clock.mono_ns(), self.clock.wall_ns(), self.clock.synced()
        new = replace(new, ts=max(0, wall_now - (mono_now - new.mono_ns)), clock_synced=synced)
        try:
            event = self.outbox.append_event(
                new,
                site=self.config.site,
                device=self.config.device,
                boot_id=self.boot_id,
                topic=self.topics.event,
                signer=self._signer,
                attachments=attachments,
            )
        except OutboxFull as exc:
            if not self._dropping:
                log.error(
                    "outbox disk is full, event %s/%s not stored (and the next ones until "
                    "there is room): %s",
                    new.sensor,
                    new.state,
                    exc,
                )
            self._dropping = True
            self.disk_full = True
            return None
        self._dropping = False
        if not self.outbox.reserve_path.exists():
            if not self.disk_full:
                log.error("outbox disk is full: using the reserve kept for alarms")
            self.disk_full = not self.outbox.restore_reserve()
        else:
            self.disk_full = False
        self.events_stored += 1
        log.info("event seq=%d %s %s %s", event.seq, event.kind, event.sensor, event.state)
        self.publisher.wake()
        return event

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
            else:
                self._store_evidence(item)

    def _store_evidence(self, evidence: EvidenceSet) -> None:
        """The pictures around a trigger: on disk, vouched for by a signed camera event, queued."""
        assert self.evidence is not None and self.config.camera is not None
        stored = self.evidence.put(evidence)
        if not stored.kept:
            log.error("no room for the pictures of %s; see evidence_full", evidence.key)
            return
        counts: list[int] = []
        max_packet = self.config.camera.max_packet_size

        def chunks(event: Event) -> list[tuple[str, bytes]]:
            topic = self.topics.snapshot(event.id)
            budget = payload_budget(max_packet, topic)
            out: list[tuple[str, bytes]] = []
            for f in stored.kept:
                parts = split(event.id, f.sha256, f.role.value, f.jpeg, budget)
                counts.append(len(parts))
                out += [(topic, p) for p in parts]
            return out

        cause = evidence.key if not evidence.key.startswith("cmd-") else None
        new = NewEvent(
            "camera",
            Kind.CAMERA,
            "snapshot",
            0,
            evidence.trigger_ns,
            False,
            snapshot_sha256=stored.hashes,
            cause=cause,
        )
        event = self._store_event(new, attachments=chunks)
        if event is None:
            self.evidence.release(stored.hashes)
            return
        rows = self.outbox.attachment_rows(event.seq)
        by_file: dict[str, list[int]] = {}
        start = 0
        for f, n in zip(stored.kept, counts, strict=True):
            by_file.setdefault(f.sha256, []).extend(rows[start : start + n])
            start += n
        self.evidence.claim(
            event.id, stored.hashes, by_file, roles={f.sha256: f.role.value for f in stored.kept}
        )

    def _drain_commands(self) -> None:
        while True:
            try:
                topic, payload = self.commands.get_nowait()
            except queue.Empty:
                return
            if topic == topics.arming(self.config.site):
                self._on_arming(payload)
                continue
            name = topic.rsplit("/", 1)[-1]
            ok, detail = self._command(name, payload)
            (log.info if ok else log.warning)("command %s: %s", name, detail)
            result = CommandResult(
                cmd=name if name.isalpha() else "invalid",
                ok=ok,
                detail=detail[:500],
                ts=self.clock.wall_ns(),
            )
            self.publisher.publish_transient(self.topics.cmd_result, result.to_json())

    def _command(self, name: str, payload: bytes) -> tuple[bool, str]:
        """Carry out one signed command from the control room; (ok, what happened)."""
        models_by_name: dict[str, type[Resend] | type[Snapshot]] = {
            "resend": Resend,
            "snapshot": Snapshot,
        }
        model = models_by_name.get(name)
        if model is None:
            return False, f"unknown command {name!r}"
        if self._commands is None:
            return False, "refused: no CA certificate to check commands with ([broker.tls])"
        try:
            cmd = self._commands.open(payload, model, self.clock.wall_ns(), self.clock.synced())
        except CommandRefused as exc:
            return False, f"refused: {exc}"
        if isinstance(cmd, Resend):
            count = self.outbox.requeue(cmd.first_seq, cmd.last_seq)
            pictures = self._resend_pictures(cmd.first_seq, cmd.last_seq)
            self.publisher.rewind()
            wanted = cmd.last_seq - cmd.first_seq + 1
            detail = f"requeued {count} of seq {cmd.first_seq}..{cmd.last_seq} for {cmd.by}"
            if count < wanted:
                detail += f"; {wanted - count} no longer kept on the unit"
            ok = count == wanted and not pictures.gone and pictures.error is None
            return ok, detail + pictures.describe()
        if self.camera is None:
            return False, "this unit has no camera"
        key = f"cmd-{uuid.uuid4().hex[:16]}"
        self.camera.trigger(key, self.clock.mono_ns())
        return True, f"pictures requested by {cmd.by} ({key})"

    def _resend_pictures(self, first_seq: int, last_seq: int) -> PicturesAgain:
        """A resend covers camera events: their pictures go again too, unless still queued.

        Delivered chunks leave the outbox at once (the evidence store keeps the pictures), so
        a broker that lost them after its PUBACK would leave the event without its pictures.
        They are chunked again from the evidence store, exactly as the first time (same topic,
        same chunk format), and stored in the outbox before anything is sent."""
        if self.evidence is None or self.config.camera is None:
            return PicturesAgain()
        events, queued, waiting, gone = 0, 0, 0, []
        covered = self.outbox.picture_events(first_seq, last_seq)
        deferred = max(0, len(covered) - PICTURE_EVENTS_PER_RESEND)
        for raw in covered[:PICTURE_EVENTS_PER_RESEND]:
            try:
                event = models.parse(Event, raw)
            except models.WireError:
                continue
            events += 1
            topic = self.topics.snapshot(event.id)
            budget = payload_budget(self.config.camera.max_packet_size, topic)
            todo: list[tuple[str, bytes, str | None]] = []
            for sha in event.snapshot_sha256 or ():
                claim = self.evidence.claim_of(event.id, sha)
                if claim and claim.rows and self.outbox.undelivered(claim.rows) == set(claim.rows):
                    waiting += 1  # never sent yet: its chunks are on their way
                    continue
                try:
                    data = self.evidence.read(sha) if sha in self.evidence else None
                except FileNotFoundError:
                    data = None
                if data is None:
                    gone.append(f"{event.id}/{sha}")
                    if (event.id, sha) not in self._gone_reported:
                        self._gone_reported.add((event.id, sha))
                        log.warning(
                            "picture %s of camera event seq=%d (%s) was asked for again but "
                            "is no longer in the evidence store",
                            sha,
                            event.seq,
                            event.id,
                        )
                    continue
                todo.append((sha, data, claim.role if claim else None))
            if not todo:
                continue
            roles = self._roles(event, todo)
            messages: list[tuple[str, bytes]] = []
            counts: list[int] = []
            for (sha, data, _), role in zip(todo, roles, strict=True):
                parts = split(event.id, sha, role, data, budget)
                counts.append(len(parts))
                messages += [(topic, p) for p in parts]
            try:
                ids = self.outbox.append_messages(messages)
            except OutboxFull as exc:
                log.error("no room in the outbox to send pictures of %s again: %s", event.id, exc)
                return PicturesAgain(
                    events, queued, waiting, tuple(gone), deferred, "outbox disk full"
                )
            rows: dict[str, list[int]] = {}
            start = 0
            for (sha, _, _), n in zip(todo, counts, strict=True):
                rows[sha] = ids[start : start + n]
                start += n
            self.evidence.requeued(event.id, rows)
            queued += len(todo)
            log.info(
                "camera event seq=%d: %d picture(s) queued again from the evidence store",
                event.seq,
                len(todo),
            )
        return PicturesAgain(events, queued, waiting, tuple(gone), deferred)

    def _roles(self, event: Event, todo: list[tuple[str, bytes, str | None]]) -> list[ChunkRole]:
        """Each picture's role in its set, as recorded; guessed for claims made before roles
        were recorded (from picture sizes: the still is the full-resolution one)."""
        roles: dict[str, ChunkRole] = {"before": "before", "still": "still", "after": "after"}
        if all(role in roles for _, _, role in todo):
            return [roles[str(role)] for _, _, role in todo]
        assert self.evidence is not None
        hashes = list(event.snapshot_sha256 or ())
        areas: list[int | None] = []
        for sha in hashes:
            try:
                with Image.open(self.evidence.path(sha)) as img:
                    areas.append(img.width * img.height)
            except (OSError, ValueError):
                areas.append(None)
        guessed = dict(zip(hashes, roles_by_size(areas), strict=True))
        return [roles[role if role in roles else guessed[sha].value] for sha, _, role in todo]

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
        if self._commands is not None:
            self._commands.close()
        self._camera_stop.set()
        if self.camera is not None:
            self.camera.close()
        if self.evidence is not None:
            self.evidence.close()
        if self._siren_out is not None:
            self._siren_out.close()
        self.sensors.close()
        self.outbox.close()
