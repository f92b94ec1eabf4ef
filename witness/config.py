"""witness.toml: who the witness is, what it trusts, where it reads, how often it cosigns."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from kernel.config import ClientTls, ConfigError, Strict, load_toml_model
from protocol.ids import SiteId, check_id

FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class WitnessMqtt(Strict):
    """The broker, reached with the witness's MQTT identity (`jaga-provision identity add
    witness NAME --site S`): it may read its sites' events and publish its own topic, no more."""

    host: str = Field(min_length=1, description="the broker's host name or address")
    port: int = Field(default=8883, ge=1, le=65535)
    tls: ClientTls
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(
        default=14 * 86_400,
        ge=60,
        description="how long the broker queues events for the witness while it is away",
    )
    receive_maximum: int = Field(default=100, ge=1, le=65535)


class WitnessConfig(Strict):
    name: str = Field(description="the witness's name, as in its MQTT identity (witness:<name>)")
    key: Path = Field(description="its Ed25519 signing key (PEM), made by `jaga-witness init`")
    data_dir: Path = Field(description="its own log of chain heads seen and cosigned (SQLite)")
    ca_fingerprint: str = Field(
        description="SHA-256 of the site CA certificate, published in advance "
        "(`jaga-provision ca fingerprint`); unit certificates must chain to it"
    )
    registry_dir: Path = Field(
        description="a copy of the provisioning registry's ca/ and devices/ folders (no keys "
        "needed): where the unit certificates come from; each is checked against the pinned CA"
    )
    sites: list[SiteId] = Field(min_length=1, description="the sites whose units it watches")
    cosign_every_s: float = Field(
        default=300.0,
        gt=0,
        description="cosign a unit's latest head at most this often (and at every checkpoint)",
    )
    cosign_every_events: int = Field(
        default=1000,
        ge=1,
        description="... or sooner, once this many new events of the unit arrived",
    )
    mqtt: WitnessMqtt

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_id(value, "witness name", allow_reserved=True)

    @field_validator("ca_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        value = value.strip().lower().replace(":", "")
        if not FINGERPRINT.match(value):
            raise ValueError(
                "64 hexadecimal digits: the site CA's SHA-256 fingerprint, as "
                "`jaga-provision ca fingerprint` prints it"
            )
        return value

    @property
    def log_path(self) -> Path:
        return self.data_dir / "witness.sqlite3"


def load_config(path: Path) -> WitnessConfig:
    """witness.toml; ConfigError naming the field and the fix."""
    return load_toml_model(path, WitnessConfig)


__all__ = ["ConfigError", "WitnessConfig", "load_config"]
