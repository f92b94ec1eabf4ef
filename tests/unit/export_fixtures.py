"""Evidence exports made in a test: a site CA, a unit, its signed events and pictures, written
by the product's own `export()` (or re-signed by someone who wants it to lie)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from typer.testing import CliRunner, Result

from broker.cli import app
from broker.evidence import EvidenceVault
from broker.export import Evidence, export
from broker.export_chain import ChainStretch
from broker.export_format import MANIFEST, ChainEnd
from broker.export_verify import ca_fingerprint
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, event_hash, sign
from provisioning import certs

SITE = "bangka-barat"
DEVICE = "gudang-01"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Authority:
    """A CA and one unit certificate it issued."""

    ca_key: certs.PrivateKey
    ca: x509.Certificate
    unit_key: certs.PrivateKey
    unit: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return ca_fingerprint(self.ca)


def authority(
    name: str = "Jaga CA Bangka Barat",
    *,
    site: str = SITE,
    device: str = DEVICE,
    unit_validity: certs.Validity | None = None,
    unit_key: certs.PrivateKey | None = None,
) -> Authority:
    ca_key = certs.new_key()
    ca = certs.make_ca(ca_key, name, certs.Validity.for_days(3650, NOW - timedelta(days=30)), 1)
    key = unit_key or certs.new_key()
    unit = certs.issue_client(
        subject=certs.device_name(site, device),
        public_key=key.public_key(),
        ca_cert=ca,
        ca_key=ca_key,
        serial=2,
        validity=unit_validity or certs.Validity.for_days(365, NOW - timedelta(days=1)),
    )
    return Authority(ca_key, ca, key, unit)


def signed_events(
    key: certs.PrivateKey,
    pictures: list[bytes],
    *,
    site: str = SITE,
    device: str = DEVICE,
    ts: int | None = None,
) -> list[Event]:
    """A door opening and the camera event that names its pictures, chained from seq 1."""
    when = ts if ts is not None else time.time_ns()
    door = sign(
        EventBody(id="door-1", site=site, device=device, sensor="pintu-utama", kind=Kind.DOOR,
                  state="open", seq=1, boot_id="boot-1", ts=when, mono_ns=1, clock_synced=True,
                  prev=GENESIS),
        key,
    )  # fmt: skip
    camera = sign(
        EventBody(id="snap-1", site=site, device=device, sensor="kamera", kind=Kind.CAMERA,
                  state="snapshot", seq=2, boot_id="boot-1", ts=when + 1, mono_ns=2,
                  clock_synced=True, prev=event_hash(door), cause="door-1",
                  snapshot_sha256=tuple(hashlib.sha256(p).hexdigest() for p in pictures)),
        key,
    )  # fmt: skip
    return [door, camera]


PICTURES = [b"\xff\xd8frame-before\xff\xd9", b"\xff\xd8still\xff\xd9", b"\xff\xd8after\xff\xd9"]


def store_with(root: Path, pictures: list[bytes]) -> EvidenceVault:
    """An evidence store holding these pictures (content-addressed files, as it keeps them)."""
    store = EvidenceVault(root)
    for data in pictures:
        store.path(hashlib.sha256(data).hexdigest()).write_bytes(data)
    return store


def make_export(
    dest: Path, who: Authority, *, events: list[Event] | None = None, carried_ca: Any = None
) -> Path:
    """An export as `evidence export` writes it, signed by `who` (carrying `carried_ca`)."""
    store = store_with(dest.parent / f"{dest.name}-store", PICTURES)
    try:
        chain = tuple(events or signed_events(who.unit_key, PICTURES))
        evidence = Evidence(
            chain[0].id, chain, ChainStretch(chain, ChainEnd.GENESIS, ChainEnd.HEAD)
        )
        export(
            evidence,
            store,
            certs.cert_pem(who.unit),
            certs.cert_pem(carried_ca or who.ca),
            dest,
        )
    finally:
        store.close()
    return dest


def manifest(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    return doc


def rewrite(folder: Path, data: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(data))


def verify_cli(folder: Path, *pin: str) -> Result:
    return CliRunner().invoke(app, ["audit", "verify-export", str(folder), *pin])
