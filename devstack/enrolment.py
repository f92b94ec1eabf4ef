"""A site's units enrolling as on a real site: the enrolment endpoint (`jaga-provision
enrol-server`) as a process, and the check that no unit's private key exists outside its unit.

The check is measured, not assumed: every unit's key is read from its unit folder, and every
file of the site outside the unit folders (the registry, the bundles, the broker's and the
collector's folders) is searched for it, as PEM, as PKCS#8 DER and as its bare 32-byte scalar.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.process import ManagedProcess

MAX_SCANNED = 64 * 1024 * 1024
"""Files larger than this are not read (none is made before the units run)."""


class EnrolServerProcess(ManagedProcess):
    """`jaga-provision enrol-server` on loopback; ready once it accepts connections."""

    def __init__(self, registry: Path, port: int, log_path: Path, bin_dir: Path) -> None:
        super().__init__("enrol-server", log_path)
        self.registry = registry
        self.port = port
        self.bin_dir = bin_dir

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(self.bin_dir / "jaga-provision"), "enrol-server", "--listen", "127.0.0.1",
            "--port", str(self.port), "--dir", str(self.registry),
        ]  # fmt: skip

    def is_ready(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0


@dataclass(frozen=True)
class KeyCheck:
    """What the search found: units whose key is on the unit, and copies found elsewhere."""

    units: int
    found_elsewhere: tuple[str, ...]
    """Paths (outside the unit folders) holding some unit's private key."""


def _forms(key: ec.EllipticCurvePrivateKey) -> tuple[list[bytes], list[bytes]]:
    """The ways a key can sit in a file: its scalar raw or hex, PKCS#8 or SEC1 DER (found as
    they are), and that DER in base64 (found in the file with its whitespace removed, so any
    line wrapping of PEM matches)."""
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    raw = [scalar, scalar.hex().encode()]
    b64 = []
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        raw.append(der)
        b64.append(base64.b64encode(der))
    return raw, b64


def keys_outside_units(site_root: Path, unit_dirs: Iterable[Path], *extra: Path) -> KeyCheck:
    """Search every file under site_root (and extra folders) outside unit_dirs for the units'
    private keys (each unit's device.key, read from its own folder)."""
    units = [d.resolve() for d in unit_dirs]
    raw: list[bytes] = []
    b64: list[bytes] = []
    for unit in units:
        key = serialization.load_pem_private_key((unit / "device.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        as_raw, as_b64 = _forms(key)
        raw += as_raw
        b64 += as_b64
    found: list[str] = []
    seen: set[Path] = set()
    for top in (site_root, *extra):
        for path in sorted(top.resolve().rglob("*")):
            if path in seen or not path.is_file() or any(path.is_relative_to(u) for u in units):
                continue
            seen.add(path)
            try:
                if path.stat().st_size > MAX_SCANNED:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            flat = b"".join(data.split())
            if any(f in data for f in raw) or any(f in flat for f in b64):
                found.append(str(path))
    return KeyCheck(len(units), tuple(found))


def token_enrolments(registry: Path) -> set[tuple[str, str]]:
    """(site, unit) of every enrolment by one-time token the endpoint recorded."""
    log = registry / "enrolment" / "log.jsonl"
    if not log.exists():
        return set()
    done = set()
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("event") == "enrolled" and entry.get("by") == "token":
            done.add((str(entry["site"]), str(entry["device"])))
    return done
