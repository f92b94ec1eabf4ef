"""Pictures around a door opening travel from the unit's camera to the collector's evidence
store, vouched for by a signed event; an auditor can prove each one untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from devstack.stack import BIN, DATABASE, Stack, jaga
from protocol.models import Event
from tests.export_tampering import resigner
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


def test_a_door_opening_leaves_signed_pictures_that_audit_and_export_can_prove(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_servers()
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
        check.returncode == 0 and f", {len(hashes)} pictures verified, 0 problems" in check.stdout
    ), check.stdout + check.stderr
    unpinned = verify_export(out)
    assert unpinned.returncode == 2 and "jaga-provision ca fingerprint" in unpinned.stderr
    for carried, says in (("own", "is not the pinned CA"), ("real", "does not chain to")):
        forged = tmp_path / f"forged-{carried}"
        shutil.copytree(out, forged)
        resigner(None, carried)(forged)
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
    exported = out / "pictures" / f"{hashes[1]}.jpg"
    exported.write_bytes(exported.read_bytes()[:-1] + b"\x00")
    check = verify_export(out, "--ca-fingerprint", pin)
    assert check.returncode == 1 and "not the one its event signed" in check.stdout
