"""The registry's records: strict TOML models of sites, units, operators and the CA's log."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.config import PinFactoryName, SensorConfig
from protocol.ids import DeviceId, SiteId

CertKind = Literal[
    "device", "collector", "operator", "witness", "home-assistant", "server", "issuing"
]
ServiceRole = Literal["collector", "operator", "witness", "home-assistant"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteRecord(Record):
    """A warehouse site and the broker its units dial."""

    id: SiteId
    name: str = Field(min_length=1)
    timezone: str
    broker_host: str = Field(min_length=1)
    broker_port: int = Field(default=8883, ge=1, le=65535)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name like Asia/Jakarta"
            ) from None
        return value


class DeviceRecord(Record):
    """A unit, its wiring and which certificate it holds now."""

    site: SiteId
    device: DeviceId
    created: datetime
    camera: bool = False
    pin_factory: PinFactoryName = "lgpio"
    sensors: list[SensorConfig] = Field(min_length=1)
    cert_serial: int | None = None
    key_generated_centrally: bool = False
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    revoked_by: str | None = None


class OperatorRecord(Record):
    """Which sites an operator identity may read and command (the broker's ACL, the collector)."""

    sites: list[str] = Field(default_factory=list)


class HomeAssistantRecord(Record):
    """A Home Assistant identity's discovery prefix and sites (the broker's ACL grants them)."""

    prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    sites: list[str] | None = None
    """Its sites (`*`: every site); None: a file from before sites, kept as every site."""


class IssuedCert(Record):
    """One line of the CA's log of issued certificates."""

    serial: int
    kind: CertKind
    subject: str
    not_before: datetime
    not_after: datetime
    site: str | None = None
    device: str | None = None
    name: str | None = None
    revoked_at: datetime | None = None
    reason: str | None = None
    issuer: int | None = None
    """Generation of the issuing CA that signed it; None: the root signed it."""
    previous: int | None = None
    """The unit's certificate whose renewal asked for this one (its lineage)."""
    by: str | None = None
    """Who: a technician's name, "token", "unit" (renewal) or None (older entries)."""


class CaLog(Record):
    """The CA's own state: counters and the issued-certificate log."""

    name: str
    created: datetime
    next_serial: int = 1
    crl_number: int = 0
    crl_next_update: datetime | None = None
    issuing_generation: int = 0
    """The newest issuing CA generation made (0: none; units are signed by the root)."""
    issuing_revoked: list[int] = Field(default_factory=list)
    """Issuing CA generations the root revoked (kept here: asked on every issue, O(1))."""
    issued: list[IssuedCert] = Field(default_factory=list)

    def find(self, serial: int) -> IssuedCert | None:
        return next((c for c in self.issued if c.serial == serial), None)


class IssuedLog(Record):
    """ca/issued.toml: the issued-certificate log, appended to one certificate at a time."""

    issued: list[IssuedCert] = Field(default_factory=list)
