"""Evidence export: an event's pictures plus a manifest an auditor can re-check offline.

The manifest holds the signed event exactly as stored, the unit's certificate and the site
CA's certificate, and per picture its hash and custody lines. `verify_export` needs nothing
else: it checks the CA signed the certificate, the certificate's key signed the event, the
event names each picture's hash, and each file still hashes to it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from broker.evidence import EvidenceStore
from broker.influxql import InfluxQL, quote_string
from protocol import models
from protocol.models import Event, WireError
from protocol.signing import SignatureError, verify

MANIFEST = "manifest.json"


class ExportError(Exception):
    """The export cannot be made; the message says why."""


def find_evidence_events(ql: InfluxQL, event_id: str) -> list[Event]:
    """The event itself if it carries pictures, else the camera events it caused."""
    rows = ql.rows(
        f'SELECT "raw" FROM "event" WHERE "id" = {quote_string(event_id)} GROUP BY "device"'
    )
    if not rows:
        raise ExportError(f"no event with id {event_id} in InfluxDB")
    event = models.parse(Event, str(rows[0]["raw"]).encode())
    if event.snapshot_sha256:
        return [event]
    caused = ql.rows(
        f'SELECT "raw" FROM "event" WHERE "device" = {quote_string(event.device)} '
        f'AND "kind" = \'camera\' AND time >= {event.ts} GROUP BY "device"'
    )
    out = [models.parse(Event, str(r["raw"]).encode()) for r in caused]
    out = [e for e in out if e.cause == event_id and e.snapshot_sha256]
    if not out:
        raise ExportError(f"event {event_id} has no pictures")
    return out


def export(
    events: list[Event], store: EvidenceStore, unit_cert: bytes, ca_cert: bytes, dest: Path
) -> Path:
    """Copy the pictures into dest and write the manifest; returns the manifest's path."""
    dest.mkdir(parents=True, exist_ok=True)
    pictures: list[dict[str, Any]] = []
    for event in events:
        custody = store.custody(event_id=event.id)
        for sha in event.snapshot_sha256 or ():
            if not store.has(sha):
                raise ExportError(f"picture {sha} of event {event.id} is not in the store")
            shutil.copyfile(store.path(sha), dest / f"{sha}.jpg")
            pictures.append(
                {
                    "event_id": event.id,
                    "sha256": sha,
                    "file": f"{sha}.jpg",
                    "custody": [c for c in custody if c["sha256"] == sha],
                }
            )
    manifest = {
        "v": 1,
        "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
        "unit_certificate": unit_cert.decode(),
        "ca_certificate": ca_cert.decode(),
        "pictures": pictures,
    }
    path = dest / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return path


@dataclass
class ExportReport:
    pictures: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(folder: Path) -> ExportReport:
    """Re-check an export with nothing but its own files."""
    report = ExportReport()
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        ca = x509.load_pem_x509_certificate(manifest["ca_certificate"].encode())
        cert = x509.load_pem_x509_certificate(manifest["unit_certificate"].encode())
        events = [models.parse(Event, json.dumps(e).encode()) for e in manifest["events"]]
    except (OSError, ValueError, KeyError, WireError) as exc:
        report.problems.append(f"manifest unreadable: {exc}")
        return report
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        report.problems.append("the unit's certificate was not issued by the CA in the export")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        report.problems.append("unsupported key type in the unit's certificate")
        return report
    vouched: dict[str, set[str]] = {}
    for event in events:
        try:
            verify(event, key)
        except SignatureError as exc:
            report.problems.append(f"event {event.id}: {exc}")
        vouched[event.id] = set(event.snapshot_sha256 or ())
    for pic in manifest.get("pictures", []):
        sha = str(pic.get("sha256", ""))
        if sha not in vouched.get(str(pic.get("event_id")), set()):
            report.problems.append(f"picture {sha[:12]}... is not named by its signed event")
            continue
        try:
            data = (folder / str(pic["file"])).read_bytes()
        except (OSError, KeyError) as exc:
            report.problems.append(f"picture {sha[:12]}... missing: {exc}")
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            report.problems.append(f"picture {sha[:12]}... does not match its hash")
            continue
        report.pictures += 1
    return report
