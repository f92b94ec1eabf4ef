"""The registry's live units and sites, as the Home Assistant bridge needs them, read again
only where a file changed.

Reading every unit's device.toml (TOML and pydantic, and before this its site's file again
for each unit) took about 2 s at 10,000 units on the collector's thread, every
`registry_poll_s`. A poll now lists the folders and looks at each file's inode, size and
modification time; only a file whose look changed is parsed again (the registry writes by
rename, so an edited file is a new inode). A poll where nothing changed says so, and the
bridge skips its comparison of every unit too.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from broker.home_assistant.discovery import Panel, Unit
from protocol.ids import InvalidIdentifier, check_id

log = logging.getLogger("jaga.home_assistant")

UnitKey = tuple[str, str]
Look = tuple[int, int, int]
"""(inode, size, modification time in ns) of a file."""


@dataclass(frozen=True, slots=True)
class Found:
    """What a poll found: the live units and the sites, and whether any file changed since
    the poll before (False: the same as last time)."""

    units: dict[UnitKey, Unit]
    panels: dict[str, Panel]
    changed: bool


class RegistryReader:
    """Live units (not revoked, holding a certificate) and sites of `sites` (None: all)."""

    def __init__(self, registry_dir: Path, sites: frozenset[str] | None) -> None:
        self.root = registry_dir
        self.sites = sites
        self._sites: dict[str, tuple[Look, Panel]] = {}
        self._devices: dict[UnitKey, tuple[Look, Unit | None]] = {}
        """None: registered, but revoked or without a certificate."""
        self.parsed = 0
        """Files parsed so far (a poll with nothing changed parses none)."""
        self._skipped: set[UnitKey] = set()

    def read(self) -> Found:
        """Poll the registry; a file that cannot be read raises (ProvisioningError-like
        ValueError or OSError): the caller tries again at its next poll."""
        changed = False
        sites: dict[str, tuple[Look, Panel]] = {}
        for name, path in _entries(os.path.join(self.root, "sites")):
            site = name.removesuffix(".toml")
            if not name.endswith(".toml") or (self.sites is not None and site not in self.sites):
                continue
            look = _look(path)
            if look is None:
                continue
            known = self._sites.get(site)
            if known is None or known[0] != look:
                sites[site] = (look, self._site(path))
                changed = True
            else:
                sites[site] = known
        devices: dict[UnitKey, tuple[Look, Unit | None]] = {}
        for site, folder in _entries(os.path.join(self.root, "devices")):
            if site not in sites:
                continue
            for device, unit_dir in _entries(folder):
                path = f"{unit_dir}/device.toml"
                look = _look(path)
                if look is None:
                    continue
                key = (site, device)
                known_unit = self._devices.get(key)
                if known_unit is not None and known_unit[0] == look:
                    devices[key] = known_unit
                elif known_unit is not None or self._valid(site, device):
                    devices[key] = (look, self._device(path, site, device))
                    changed = True
        changed = changed or set(sites) != set(self._sites) or set(devices) != set(self._devices)
        self._sites, self._devices = sites, devices
        units = {key: unit for key, (_, unit) in devices.items() if unit is not None}
        return Found(units, {site: panel for site, (_, panel) in sites.items()}, changed)

    def _valid(self, site: str, device: str) -> bool:
        """Whether a folder's names are ids (another is skipped, and said once)."""
        try:
            check_id(site, "site")
            check_id(device, "device")
        except InvalidIdentifier as exc:
            if (site, device) not in self._skipped:
                self._skipped.add((site, device))
                log.warning("registry: devices/%s/%s skipped: %s", site, device, exc)
            return False
        return True

    def _site(self, path: str) -> Panel:
        from provisioning.records import SiteRecord

        self.parsed += 1
        record = SiteRecord.model_validate(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        return Panel(record.id, record.name)

    def _device(self, path: str, site: str, device: str) -> Unit | None:
        from provisioning.records import DeviceRecord

        self.parsed += 1
        record = DeviceRecord.model_validate(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        if record.revoked_at is not None or record.cert_serial is None:
            return None
        sensors = tuple((s.name, str(s.kind)) for s in record.sensors)
        return Unit(site, device, sensors, record.camera)


def _entries(folder: str) -> list[tuple[str, str]]:
    """A folder's entries (name, path), sorted by name; none when it is missing. Strings, not
    Path objects: at 10,000 units pathlib's parsing was most of a poll's time."""
    try:
        with os.scandir(folder) as found:
            return sorted((e.name, e.path) for e in found)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _look(path: str) -> Look | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
