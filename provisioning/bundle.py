"""One archive per unit for the SD card: config, trust anchor, its certificate, the systemd unit."""

from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import provisioning
from provisioning.errors import ProvisioningError
from provisioning.files import PRIVATE_MODE, PUBLIC_MODE
from provisioning.registry import Registry

SERVICE_NAME = "jaga-agent.service"


def systemd_dir() -> Path:
    """The repository's systemd/ folder (beside the provisioning package)."""
    return Path(provisioning.__file__).resolve().parents[1] / "systemd"


@dataclass(frozen=True, slots=True)
class Bundle:
    """What went into the archive."""

    path: Path
    members: tuple[str, ...]
    has_certificate: bool
    has_key: bool


def write_bundle(
    registry: Registry,
    site: str,
    device: str,
    out: Path,
    *,
    service_file: Path | None = None,
) -> Bundle:
    """Write out as .tar.gz: agent.toml, ca.crt, device.crt and device.key when they exist here."""
    record = registry.device(site, device)
    if record.revoked_at is not None:
        raise ProvisioningError(f"device {device!r} is revoked; it gets no bundle")
    folder = registry.device_dir(site, device)
    service_file = service_file or systemd_dir() / SERVICE_NAME
    if not service_file.is_file():
        raise ProvisioningError(
            f"systemd unit {service_file} not found: run jaga-provision from the Jaga checkout "
            "(the bundle ships systemd/jaga-agent.service)"
        )
    agent_toml = folder / "agent.toml"
    if not agent_toml.is_file():
        raise ProvisioningError(f"{agent_toml} is missing: run `jaga-provision device add` again")
    files: list[tuple[str, Path, int]] = [
        ("agent.toml", agent_toml, PUBLIC_MODE),
        ("ca.crt", registry.ca_cert_path, PUBLIC_MODE),
        (SERVICE_NAME, service_file, PUBLIC_MODE),
    ]
    has_cert = (folder / "device.crt").is_file()
    if has_cert:
        files.append(("device.crt", folder / "device.crt", PUBLIC_MODE))
    has_key = (folder / "device.key").is_file()
    if has_key:
        files.append(("device.key", folder / "device.key", PRIVATE_MODE))
    if out.exists():
        raise ProvisioningError(f"{out} already exists; remove it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    data = _archive(files)
    fd = os.open(
        out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE if has_key else PUBLIC_MODE
    )
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return Bundle(out, tuple(name for name, _, _ in files), has_cert, has_key)


def _archive(files: list[tuple[str, Path, int]]) -> bytes:
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, path, mode in files:
            content = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            info.mtime = now
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
