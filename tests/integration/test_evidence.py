"""Pictures around a door opening travel from the unit's camera to the collector's evidence
store, vouched for by a signed event; an auditor can prove each one untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from PIL import Image

from devstack.stack import BIN, DATABASE, Stack, jaga
from protocol.models import Event, EventBody
from protocol.signing import sign
from provisioning import certs
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration


def camera_events(stack: Stack) -> list[dict[str, Any]]:
    assert stack.influx is not None
    return stack.influx.query(
        'SELECT * FROM "event" WHERE "device" = \'gudang-01\' AND "kind" = \'camera\'',
        db=DATABASE,
    )


def jaga_collector(stack: Stack, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return stack.collector_cli(*args)


def verify_export(folder: Path, *pin: str) -> subprocess.CompletedProcess[str]:
    """`jaga-collector audit verify-export` as an auditor runs it: no collector.toml."""
    return subprocess.run(
        [str(BIN / "jaga-collector"), "audit", "verify-export", str(folder), *pin],
        capture_output=True,
        text=True,
        check=False,
    )


def resign_under_a_twin_ca(export: Path, dest: Path, carried: str) -> Path:
    """The export re-made by a forger: a self-made CA with the real CA's name, a unit
    certificate naming the same unit, the same events signed again; the forger's CA (own) or
    the real one (real) carried in the manifest."""
    shutil.copytree(export, dest)
    doc = json.loads((dest / "manifest.json").read_text())
    real_ca = x509.load_pem_x509_certificate(doc["ca_certificate"].encode())
    unit = x509.load_pem_x509_certificate(doc["unit_certificate"].encode())
    ca_key, unit_key = certs.new_key(), certs.new_key()
    validity = certs.Validity(real_ca.not_valid_before_utc, real_ca.not_valid_after_utc)
    twin = (
        x509.CertificateBuilder()
        .subject_name(real_ca.subject)
        .issuer_name(real_ca.subject)
        .public_key(ca_key.public_key())
        .serial_number(real_ca.serial_number)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    forged_unit = certs.issue_client(
        subject=unit.subject,
        public_key=unit_key.public_key(),
        ca_cert=twin,
        ca_key=ca_key,
        serial=unit.serial_number,
        validity=validity,
    )
    bodies = [
        EventBody.model_validate_json(json.dumps({k: v for k, v in e.items() if k != "sig"}))
        for e in doc["events"]
    ]
    doc["events"] = [sign(b, unit_key).model_dump(mode="json", exclude_none=True) for b in bodies]
    doc["unit_certificate"] = certs.cert_pem(forged_unit).decode()
    doc["ca_certificate"] = certs.cert_pem(twin if carried == "own" else real_ca).decode()
    (dest / "manifest.json").write_text(json.dumps(doc))
    return dest


def test_a_door_opening_leaves_signed_pictures_that_audit_and_export_can_prove(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_broker()
    stack.start_influx()
    stack.start_collector()
    evidence = stack.root / "collector" / "data" / "evidence"
    with LiveAgent(stack.unit_dir("gudang-01") / "agent.toml") as unit:
        eventually(lambda: unit.agent.camera is not None and unit.agent.camera.frames_seen >= 4)
        unit.set("pintu-utama", True)
        rows = eventually(lambda: [r for r in camera_events(stack) if r["state"] == "snapshot"])
        snapshot = Event.model_validate_json(rows[0]["raw"])
        door = next(
            r
            for r in stack.influx.query(  # type: ignore[union-attr]
                'SELECT * FROM "event" WHERE "device" = \'gudang-01\' AND "state" = \'open\'',
                db=DATABASE,
            )
        )
        assert snapshot.cause == door["id"], "the snapshot names the opening it belongs to"
        hashes = snapshot.snapshot_sha256 or ()
        assert len(hashes) >= 3, "frames before, the still, frames after"
        eventually(lambda: all((evidence / f"{h}.jpg").exists() for h in hashes), timeout=30)
    for h in hashes:
        data = (evidence / f"{h}.jpg").read_bytes()
        assert hashlib.sha256(data).hexdigest() == h
        with Image.open(evidence / f"{h}.jpg") as img:
            assert img.format == "JPEG"
    custody = (evidence / "custody.jsonl").read_text()
    assert all(h in custody for h in hashes)

    audit = jaga_collector(stack, "audit", "verify", "--site", "bangka-barat")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert f"evidence: {len(hashes)} pictures for 1 events, 0 hash mismatches" in audit.stdout

    # A symbolic link planted in the destination: the export refuses, the target untouched.
    outside = tmp_path / "outside.conf"
    outside.write_text("do not touch\n")
    trap = tmp_path / "trap"
    trap.mkdir()
    (trap / "manifest.json").symlink_to(outside)
    refused = jaga_collector(stack, "evidence", "export", door["id"], trap)
    assert refused.returncode == 2 and "is not empty" in refused.stderr, refused.stderr
    assert outside.read_text() == "do not touch\n" and os.listdir(trap) == ["manifest.json"]

    out = tmp_path / "export"
    done = jaga_collector(stack, "evidence", "export", door["id"], out)
    assert done.returncode == 0, done.stderr
    # The auditor pins the CA's fingerprint, as the technician printed and published it.
    pin = jaga("jaga-provision", "--dir", stack.registry, "ca", "fingerprint").stdout.strip()
    check = verify_export(out, "--ca-fingerprint", pin)
    assert (
        check.returncode == 0
        and f"export: {len(hashes)} pictures verified, 0 problems" in check.stdout
    ), check.stdout + check.stderr
    unpinned = verify_export(out)
    assert unpinned.returncode == 2 and "jaga-provision ca fingerprint" in unpinned.stderr
    for carried, says in (("own", "is not the pinned CA"), ("real", "does not chain to")):
        forged = resign_under_a_twin_ca(out, tmp_path / f"forged-{carried}", carried)
        check = verify_export(forged, "--ca-fingerprint", pin)
        assert check.returncode == 1 and "0 pictures verified" in check.stdout, check.stdout
        assert says in check.stdout

    # One byte changed in a stored picture: the auditor says so, and so does the export check.
    victim = evidence / f"{hashes[0]}.jpg"
    changed = bytearray(victim.read_bytes())
    changed[len(changed) // 2] ^= 0x01
    victim.write_bytes(bytes(changed))
    audit = jaga_collector(stack, "audit", "verify", "--site", "bangka-barat")
    assert audit.returncode == 1
    assert "1 hash mismatches" in audit.stdout and "changed since it was stored" in audit.stdout
    exported = out / f"{hashes[1]}.jpg"
    exported.write_bytes(exported.read_bytes()[:-1] + b"\x00")
    check = verify_export(out, "--ca-fingerprint", pin)
    assert check.returncode == 1 and "does not match its hash" in check.stdout
