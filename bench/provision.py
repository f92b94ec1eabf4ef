"""Enrol hundreds of bench units in seconds through the provisioning API.

`jaga-provision device add --generate-key` runs the same code, but each call re-reads and
re-writes the CA log (every certificate ever issued) and lists every unit to check the id is
free: enrolling N units costs O(N^2) — about 110 s for 2,000 units here. `BatchRegistry`
keeps the CA log and the unit index in memory while a batch is enrolled and writes the log once
at the end; everything else (keys, certificates, device records, agent.toml) is written by the
product's own code as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from provisioning.enrolment import issue_with_new_key
from provisioning.register import add_device
from provisioning.registry import CaLog, DeviceRecord, Registry
from provisioning.wiring import parse_wiring


class BatchRegistry(Registry):
    """A Registry whose CA log and unit index stay in memory until `flush()`."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._log: CaLog | None = None
        self._units: set[tuple[str, str]] | None = None

    def ca_log(self) -> CaLog:
        if self._log is None:
            self._log = super().ca_log()
        return self._log

    def save_ca_log(self, log: CaLog) -> None:
        self._log = log

    def _index(self) -> set[tuple[str, str]]:
        if self._units is None:
            self._units = set(super().devices())
        return self._units

    def devices(self) -> list[tuple[str, str]]:
        return sorted(self._index())

    def device_site(self, device: str) -> str | None:
        return next((s for s, d in self._index() if d == device), None)

    def save_device(self, record: DeviceRecord) -> Path:
        path = super().save_device(record)
        self._index().add((record.site, record.device))
        return path

    def flush(self) -> None:
        if self._log is not None:
            Registry.save_ca_log(self, self._log)


def enrol_units(
    registry_dir: Path, site: str, devices: Sequence[str], *, doors: Sequence[str] = ("17:pintu",)
) -> None:
    """Register each device in `site` with a centrally made key and certificate."""
    registry = BatchRegistry(registry_dir)
    sensors = parse_wiring(doors=doors)
    try:
        for device in devices:
            add_device(registry, site, device, sensors, pin_factory="mock")
            issue_with_new_key(registry, site, device)
    finally:
        registry.flush()
