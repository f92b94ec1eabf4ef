"""Adding sites and units to the registry, refusing bad names and duplicate ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from agent.config import AgentConfig, PinFactoryName, SensorConfig
from protocol.ids import InvalidIdentifier, check_id
from provisioning.agent_toml import write_agent_toml
from provisioning.errors import ProvisioningError
from provisioning.records import DeviceRecord, SiteRecord
from provisioning.registry import Registry


def add_site(
    registry: Registry,
    site: str,
    *,
    name: str,
    timezone: str,
    broker_host: str,
    broker_port: int = 8883,
) -> Path:
    """Register a site; refuse one that exists (edit sites/<site>.toml by hand to change it)."""
    registry.ca_certificate()
    _check(site, "site")
    path = registry.site_path(site)
    if path.exists():
        raise ProvisioningError(f"site {site!r} already exists ({path})")
    try:
        record = SiteRecord(
            id=site,
            name=name,
            timezone=timezone,
            broker_host=broker_host,
            broker_port=broker_port,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "site"
        raise ProvisioningError(f"{field}: {first['msg'].removeprefix('Value error, ')}") from None
    return registry.save_site(record)


@dataclass(frozen=True, slots=True)
class AddedDevice:
    record: DeviceRecord
    device_toml: Path
    agent_toml: Path
    config: AgentConfig


def add_device(
    registry: Registry,
    site: str,
    device: str,
    sensors: list[SensorConfig],
    *,
    camera: bool = False,
    pin_factory: PinFactoryName = "lgpio",
    now: datetime | None = None,
) -> AddedDevice:
    """Register a unit and write its agent.toml; device ids are unique across all sites."""
    registry.ca_certificate()
    _check(site, "site")
    _check(device, "device")
    site_record = registry.site(site)
    other = registry.device_site(device)
    if other is not None:
        where = "this site" if other == site else f"site {other!r}"
        raise ProvisioningError(
            f"device id {device!r} is already used in {where}; ids are unique across the whole "
            "registry (the broker knows a unit by its id alone): choose another id"
        )
    record = DeviceRecord(
        site=site,
        device=device,
        created=now or datetime.now(UTC).replace(microsecond=0),
        camera=camera,
        pin_factory=pin_factory,
        sensors=sensors,
    )
    folder = registry.device_dir(site, device)
    config = write_agent_toml(folder / "agent.toml", site_record, record)
    device_toml = registry.save_device(record)
    return AddedDevice(record, device_toml, folder / "agent.toml", config)


def _check(value: str, what: str) -> None:
    try:
        check_id(value, what)
    except InvalidIdentifier as exc:
        raise ProvisioningError(str(exc)) from None
