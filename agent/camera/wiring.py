"""The camera loop a `[camera]` section describes: the simulated or picamera2 camera, and the
ring, evidence and health logic sized from the section's seconds and megabytes."""

from __future__ import annotations

from collections.abc import Callable

from agent.camera.base import Camera
from agent.camera.evidence import Evidence
from agent.camera.health import Health
from agent.camera.picamera2_adapter import Picamera2Camera
from agent.camera.ring import FrameRing
from agent.camera.service import CameraLoop
from agent.camera.simulated import SimulatedCamera
from agent.clock import Clock
from agent.config import CameraConfig
from kernel.units import MB, S


def camera_loop(
    cfg: CameraConfig, device: str, clock: Clock, wake: Callable[[], None]
) -> CameraLoop:
    """The camera loop of one unit; `wake` rouses the main loop when the camera has output."""
    camera: Camera
    if cfg.kind == "simulated":
        camera = SimulatedCamera(
            device,
            size=cfg.frame_size,
            still_size=cfg.still_size or (1280, 720),
            fps=cfg.fps,
            quality=cfg.quality,
            still_quality=cfg.still_quality,
            mono_ns=clock.mono_ns,
            wall_ns=clock.wall_ns,
        )
    else:
        camera = Picamera2Camera(
            size=cfg.frame_size,
            fps=cfg.fps,
            still_size=cfg.still_size,
            quality=cfg.quality,
            still_quality=cfg.still_quality,
            camera_num=cfg.camera_num,
            mono_ns=clock.mono_ns,
        )
    return CameraLoop(
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
        mono_ns=clock.mono_ns,
        wake=wake,
    )
