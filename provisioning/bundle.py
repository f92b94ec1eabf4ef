"""One archive per unit for the SD card: config, trust anchor, its certificate or a one-time
enrolment token, the systemd unit.

A unit that has neither a certificate nor a key made here gets a one-time token
(provisioning/tokens.py) in its bundle as ``enrol.token``: on the unit, `jaga-agent enroll
--token-file` (scripts/install-agent.sh runs it) makes the key there and has the site's
enrolment endpoint certify it, in the same install run. The registry keeps only the token's
hash; the token itself exists only in the archive, which is then readable by its owner only.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import provisioning
from provisioning.errors import ProvisioningError
from provisioning.files import PRIVATE_MODE, PUBLIC_MODE
from provisioning.registry import Registry
from provisioning.tokens import DEFAULT_TTL, issue_token

SERVICE_NAME = "jaga-agent.service"
TOKEN_MEMBER = "enrol.token"


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
    token_expires_at: datetime | None = None
    """When the bundle's one-time enrolment token expires; None when it carries none."""

    @property
    def has_token(self) -> bool:
        return self.token_expires_at is not None


def write_bundle(
    registry: Registry,
    site: str,
    device: str,
    out: Path,
    *,
    service_file: Path | None = None,
    token: bool = True,
    token_ttl: timedelta = DEFAULT_TTL,
) -> Bundle:
    """Write out as .tar.gz: agent.toml, ca.crt, device.crt and device.key when they exist here;
    for a unit with neither (and token), a new one-time enrolment token (an older unspent one
    stops working)."""
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
    contents: list[tuple[str, bytes, int]] = [(n, p.read_bytes(), m) for n, p, m in files]
    expires: datetime | None = None
    if token and not has_cert and not has_key:
        issued = issue_token(registry, site, device, ttl=token_ttl)
        contents.append((TOKEN_MEMBER, (issued.token + "\n").encode(), PRIVATE_MODE))
        expires = issued.expires_at
    secret = has_key or expires is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    data = _archive(contents)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE if secret else PUBLIC_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return Bundle(out, tuple(name for name, _, _ in contents), has_cert, has_key, expires)


def _archive(files: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content, mode in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            info.mtime = now
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
