"""Pydantic models of every payload on the wire; strict, versioned, extra fields forbidden."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from protocol.ids import DeviceId, SensorName, SiteId

# Far enough back for a Pi without RTC that has not synchronised yet, far enough ahead to catch
# garbage; the collector flags unsynchronised clocks instead of trusting them.
MAX_TS_NS = 4_102_444_800 * 10**9  # 2100-01-01

# Every integer that the collector writes to InfluxDB is bounded here: InfluxDB keeps integer
# fields as int64 and refuses a whole write that holds one out of range. The bounds are what the
# figure can mean, far beyond any real unit, so an honest unit never meets one.
INT64_LIMIT = 2**63
"""Integers must stay below this (and >= its negative) to be stored at all."""
MAX_SEQ = INT64_LIMIT - 1
MAX_UPTIME_S = 100 * 366 * 86_400
"""A century: uptimes, connection ages."""
MAX_MB = 2**40
"""An exbibyte, in MB: disk and evidence figures."""
MAX_COUNT = 2**40
"""Messages, pictures, alerts counted: far past what an SD card or a year of alarms holds."""
MAX_CERT_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z: the latest notAfter an X.509 certificate can state."""
MAX_CERT_DAYS = 10**7
"""Days to (or, negative, since) a certificate's expiry: beyond any X.509 date seen from a
clock before 2100."""
HEX64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, StringConstraints(max_length=200)]
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class Kind(StrEnum):
    """What kind of thing an event reports."""

    DOOR = "door"
    MOTION = "motion"
    TAMPER = "tamper"
    PATROL = "patrol"
    CAMERA = "camera"
    SYSTEM = "system"
    CHECKPOINT = "checkpoint"


STATES: dict[Kind, frozenset[str]] = {
    Kind.DOOR: frozenset({"open", "closed", "held-open"}),
    Kind.MOTION: frozenset({"motion", "still"}),
    Kind.TAMPER: frozenset({"tampered", "normal"}),
    Kind.PATROL: frozenset({"checkin"}),
    Kind.CAMERA: frozenset({"fault", "recovered", "covered", "uncovered", "snapshot"}),
    Kind.SYSTEM: frozenset({"boot", "shutdown", "clock-synced", "disk-full", "disk-ok"}),
    # A checkpoint's state is the site's arming as the unit last heard it ("unknown": never).
    Kind.CHECKPOINT: frozenset({"disarmed", "arming", "armed", "pending", "unknown"}),
}
SENSOR_STATES = STATES[Kind.DOOR] | STATES[Kind.MOTION] | STATES[Kind.TAMPER]
"""What a checkpoint may say of one input; the word also says its kind (the sets are disjoint)."""
CHECKPOINT_SENSOR = "unit"
"""The `sensor` of every checkpoint: it speaks for the whole unit."""
MAX_CHECKPOINT_SENSORS = 64


class WireModel(BaseModel):
    """Base of all payloads: immutable, no unknown fields, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class Checkpoint(WireModel):
    """What a unit signs every few minutes into its chain, so that silence can be proven:
    it was alive, on which schedule, and what each of its inputs said."""

    interval_s: int = Field(ge=1, le=3600, description="the unit's checkpoint period")
    uptime_s: int = Field(ge=0, le=MAX_UPTIME_S)
    sensors: dict[SensorName, Annotated[str, StringConstraints(max_length=32)]] = Field(
        max_length=MAX_CHECKPOINT_SENSORS,
        description="each door, PIR and tamper input: its debounced state (patrol buttons and "
        "the camera have none)",
    )

    def model_post_init(self, _context: object) -> None:
        for name, state in self.sensors.items():
            if state not in SENSOR_STATES:
                allowed = ", ".join(sorted(SENSOR_STATES))
                raise ValueError(f"sensor {name!r}: state {state!r} is not one of {allowed}")


class EventBody(WireModel):
    """Everything a unit signs about one observation."""

    v: Literal[1] = 1
    id: Token
    site: SiteId
    device: DeviceId
    sensor: SensorName
    kind: Kind
    state: Annotated[str, StringConstraints(pattern=r"^[a-z-]{1,32}$")]
    seq: int = Field(ge=1, le=MAX_SEQ)
    boot_id: Token
    ts: int = Field(ge=0, lt=MAX_TS_NS, description="wall clock, ns since the Unix epoch")
    mono_ns: int = Field(ge=0, lt=INT64_LIMIT, description="monotonic clock since boot, ns")
    clock_synced: bool
    snapshot_sha256: tuple[HEX64, ...] | None = Field(default=None, max_length=64)
    cause: Token | None = Field(default=None, description="id of the event that caused this one")
    checkpoint: Checkpoint | None = Field(default=None, description="kind checkpoint only")
    prev: HEX64

    def model_post_init(self, _context: object) -> None:
        if self.state not in STATES[self.kind]:
            allowed = ", ".join(sorted(STATES[self.kind]))
            raise ValueError(f"state {self.state!r} is not valid for kind {self.kind}: {allowed}")
        if (self.kind is Kind.CHECKPOINT) != (self.checkpoint is not None):
            raise ValueError("a checkpoint (and only a checkpoint) carries the checkpoint field")
        if self.kind is Kind.CHECKPOINT and self.sensor != CHECKPOINT_SENSOR:
            raise ValueError(f"a checkpoint's sensor is {CHECKPOINT_SENSOR!r}")


class Event(EventBody):
    """A signed event: the body plus the unit's signature over its canonical bytes."""

    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,200}$")]


class Heartbeat(WireModel):
    """A unit's periodic health report; not signed, the broker ACL vouches for its origin."""

    v: Literal[1] = 1
    site: SiteId
    device: DeviceId
    ts: int = Field(ge=0, lt=MAX_TS_NS)
    boot_id: Token
    uptime_s: int = Field(ge=0, le=MAX_UPTIME_S)
    interval_s: int = Field(ge=1, le=3600)
    cpu_temp_c: float | None = Field(default=None, allow_inf_nan=False, ge=-60, le=150)
    disk_free_mb: int | None = Field(default=None, ge=0, le=MAX_MB)
    disk_full: bool = False
    outbox_depth: int = Field(ge=0, le=MAX_COUNT)
    clock_synced: bool
    last_seq: int = Field(ge=0, le=MAX_SEQ)
    chain_head: HEX64
    cert_days_left: int | None = Field(default=None, ge=-MAX_CERT_DAYS, le=MAX_CERT_DAYS)
    undervoltage: bool | None = None
    connected_since_s: int | None = Field(default=None, ge=0, le=MAX_UPTIME_S)
    evidence_used_mb: int | None = Field(default=None, ge=0, le=MAX_MB)
    evidence_held_mb: int | None = Field(default=None, ge=0, le=MAX_MB)
    evidence_refused: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    evidence_full: bool = False


class Status(WireModel):
    """Birth (online) and last will (offline) of a unit, retained."""

    v: Literal[1] = 1
    site: SiteId
    device: DeviceId
    state: Literal["online", "offline"]
    boot_id: Token
    version: Text | None = None
    sensors: tuple[SensorName, ...] | None = None
    cert_not_after: int | None = Field(
        default=None, ge=0, le=MAX_CERT_SECONDS, description="seconds since epoch"
    )


class DeadLetter(WireModel):
    """What the collector could not accept, and why."""

    v: Literal[1] = 1
    topic: Annotated[str, StringConstraints(max_length=512)]
    reason: Annotated[str, StringConstraints(max_length=2000)]
    received_ts: int = Field(ge=0, lt=INT64_LIMIT)
    payload_b64: Annotated[str, StringConstraints(max_length=8192)]
    payload_len: int = Field(ge=0, lt=INT64_LIMIT)


WireModelT = TypeVar("WireModelT", bound=WireModel)


class WireError(ValueError):
    """A payload that does not match its model, with a reason fit for a dead-letter record."""


def parse(model: type[WireModelT], payload: bytes) -> WireModelT:
    """Parse JSON bytes into model; raise WireError with a short, readable reason."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        raise WireError(_summarise(exc)) from None
    except (ValueError, RecursionError) as exc:  # model_post_init or the JSON parser
        raise WireError(str(exc)[:500]) from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def dumps_compact(obj: object) -> bytes:
    """JSON without spaces, used for payloads that are not models."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
