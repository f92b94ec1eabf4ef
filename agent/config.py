"""The unit's TOML config, validated strictly so a wiring mistake is caught before the door is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from kernel.config import ClientTls, Strict, load_toml_model
from protocol.ids import DeviceId, SensorName, SiteId

SensorKind = Literal["door", "motion", "tamper", "patrol"]
PinFactoryName = Literal["lgpio", "rpigpio", "pigpio", "native", "mock"]
BCM_PINS = range(2, 28)

DEFAULT_ACTIVE_HIGH: dict[str, bool] = {
    # Reed switch to ground with the pull-up on: the magnet closes the contact (low) while the
    # door is shut, so "active" (open) is high.
    "door": True,
    # PIR modules drive their output high on motion.
    "motion": True,
    # Enclosure switch held closed (low) by the lid; opening the lid lets the pull-up win.
    "tamper": True,
    # Push button to ground: pressed is low.
    "patrol": False,
}


class BrokerConfig(Strict):
    """Where the central Mosquitto is."""

    host: str = Field(min_length=1, description="broker host name or address")
    port: int = Field(default=8883, ge=1, le=65535)
    keepalive_s: int = Field(
        default=6,
        ge=5,
        le=600,
        description="MQTT keepalive: the broker publishes the unit's will 1.5 x this after the "
        "last packet it had (6 s: 9 s, and Mosquitto 2.0.11 looks every 5 s; a lost unit is "
        "reported within 20 s)",
    )
    tls: ClientTls | None = Field(default=None, description="omit only on a loopback test broker")


class SensorConfig(Strict):
    """One wired input."""

    name: SensorName = Field(description="name shown to people, e.g. pintu-utama")
    kind: SensorKind
    pin: int = Field(description="BCM GPIO number, 2-27")
    active_high: bool | None = Field(
        default=None, description="level when open/motion/tampered/pressed; default per kind"
    )
    pull_up: bool | None = Field(default=None, description="internal pull-up; default for kind")
    debounce_ms: int = Field(default=50, ge=0, le=5000)
    held_open_s: float = Field(default=120.0, gt=0, description="door: warn when open this long")
    retrigger_s: float = Field(default=30.0, gt=0, description="motion: quiet time before still")

    @model_validator(mode="after")
    def _pin_on_header(self) -> SensorConfig:
        if self.pin not in BCM_PINS:
            raise ValueError(f"pin {self.pin} is not a BCM GPIO on the 40-pin header (2-27)")
        return self

    @property
    def is_active_high(self) -> bool:
        return DEFAULT_ACTIVE_HIGH[self.kind] if self.active_high is None else self.active_high

    @property
    def uses_pull_up(self) -> bool:
        """Contacts to ground need the pull-up; a PIR drives its own line."""
        if self.pull_up is not None:
            return self.pull_up
        return self.kind != "motion"


class CameraConfig(Strict):
    """The unit's camera: a ring of low-resolution frames and a still on every trigger."""

    kind: Literal["picamera2", "simulated"] = Field(
        default="picamera2", description="picamera2 on a Pi; simulated for the demo and tests"
    )
    camera_num: int = Field(default=0, ge=0, le=7, description="picamera2 camera index")
    fps: float = Field(default=2.0, gt=0, le=30, description="low-resolution frames per second")
    ring_seconds: float = Field(default=10.0, gt=0, le=120, description="kept before a trigger")
    ring_max_mb: float = Field(default=8, gt=0, le=256)
    frame_size: tuple[int, int] = Field(default=(640, 480), description="low-res width, height")
    still_size: tuple[int, int] | None = Field(default=None, description="None: full sensor")
    quality: int = Field(default=75, ge=30, le=95)
    still_quality: int = Field(default=90, ge=30, le=95)
    after_s: float = Field(default=3.0, ge=0, le=30, description="frames kept after a trigger")
    stall_s: float = Field(default=10.0, ge=2, le=600, description="no frame this long: fault")
    cover_stddev: float = Field(default=6.0, ge=0, description="below: the frame looks covered")
    uncover_stddev: float = Field(default=10.0, ge=0, description="above: it looks clear again")
    cover_frames: int = Field(default=6, ge=1, le=100)
    uncover_frames: int = Field(default=4, ge=1, le=100)
    evidence_max_mb: int = Field(default=512, ge=16, description="disk for pictures on the unit")
    max_packet_size: int = Field(
        default=262_144, ge=16_384, description="the broker's max_packet_size; pictures split below"
    )
    motion: Literal["always", "guarded"] = Field(
        default="always",
        description="picture every PIR motion (every intrusion gets its still), or only motion "
        "that may be an intrusion (armed, exit delay, link down, scheduled arming due): fewer "
        "pictures by day on a metered SIM",
    )

    @model_validator(mode="after")
    def _thresholds(self) -> CameraConfig:
        if self.uncover_stddev < self.cover_stddev:
            raise ValueError("uncover_stddev must be at least cover_stddev (hysteresis)")
        for name, size in (("frame_size", self.frame_size), ("still_size", self.still_size)):
            if size is not None and (size[0] % 2 or size[1] % 2 or min(size) < 16):
                raise ValueError(f"{name} {size}: use even numbers of at least 16")
        return self


class SirenConfig(Strict):
    """A siren (or strobe) on a relay or transistor: sounds locally, network or not."""

    pin: int = Field(description="BCM GPIO driving the siren")
    active_high: bool = Field(default=True, description="level that switches it on")
    seconds: float = Field(default=180.0, gt=0, le=3600, description="how long it sounds")

    @model_validator(mode="after")
    def _pin_on_header(self) -> SirenConfig:
        if self.pin not in BCM_PINS:
            raise ValueError(f"pin {self.pin} is not a BCM GPIO on the 40-pin header (2-27)")
        return self


class AgentConfig(Strict):
    """Everything one unit needs to know about itself."""

    site: SiteId
    device: DeviceId
    broker: BrokerConfig
    sensors: Annotated[list[SensorConfig], Field(min_length=1)]
    heartbeat_s: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="health and last seq this often (liveness is the keepalive's: see broker)",
    )
    checkpoint_s: int = Field(
        default=300,
        description="seconds between the signed checkpoints that prove a quiet window "
        "(`jaga-collector audit quiet` allows twice this between two of them)",
    )
    data_dir: Path = Field(default=Path("/var/lib/jaga"), description="outbox and keys")
    pin_factory: PinFactoryName = Field(default="lgpio")
    camera: CameraConfig | None = Field(default=None, description="omit when there is none")
    siren: SirenConfig | None = Field(default=None, description="omit when there is none")
    entry_doors: list[str] = Field(
        default_factory=list,
        description="doors that start the site's entry delay instead of sounding at once",
    )
    signing_key: Path | None = Field(
        default=None, description="key that signs events; default: broker.tls.key"
    )

    @field_validator("checkpoint_s")
    @classmethod
    def _checkpoint_range(cls, value: int) -> int:
        if not 1 <= value <= 3600:
            raise ValueError(
                f"{value} is out of range: give 1 to 3600 seconds between signed checkpoints "
                "(default 300; a long one leaves long windows that no checkpoint vouches for)"
            )
        return value

    @model_validator(mode="after")
    def _unique_wiring(self) -> AgentConfig:
        names = [s.name for s in self.sensors]
        dup_names = sorted({n for n in names if names.count(n) > 1})
        if dup_names:
            raise ValueError(f"sensor names must be unique: {', '.join(dup_names)} repeated")
        pins = [s.pin for s in self.sensors] + ([self.siren.pin] if self.siren else [])
        dup_pins = sorted({p for p in pins if pins.count(p) > 1})
        if dup_pins:
            raise ValueError(f"each pin can carry one sensor: pin {dup_pins[0]} used twice")
        return self

    @property
    def key_path(self) -> Path:
        if self.signing_key is not None:
            return self.signing_key
        if self.broker.tls is not None:
            return self.broker.tls.key
        return self.data_dir / "identity.key"


def load_config(path: Path) -> AgentConfig:
    """Read and validate an agent.toml; relative paths are taken from the file's folder."""
    return _resolve_paths(load_toml_model(path, AgentConfig), path.parent)


def _resolve_paths(config: AgentConfig, base: Path) -> AgentConfig:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    update: dict[str, object] = {"data_dir": fix(config.data_dir)}
    if config.signing_key is not None:
        update["signing_key"] = fix(config.signing_key)
    if config.broker.tls is not None:
        tls = config.broker.tls
        new_tls = tls.model_copy(
            update={"ca": fix(tls.ca), "cert": fix(tls.cert), "key": fix(tls.key)}
        )
        update["broker"] = config.broker.model_copy(update={"tls": new_tls})
    return config.model_copy(update=update)
