"""Pictures around a door opening travel from the unit's camera to the collector's evidence
store, vouched for by a signed event; an auditor can prove each one untouched."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from devstack.stack import BIN, DATABASE, Stack
from protocol.models import Event
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

    out = tmp_path / "export"
    done = jaga_collector(stack, "evidence", "export", door["id"], out)
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        [str(BIN / "jaga-collector"), "audit", "verify-export", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        check.returncode == 0
        and f"export: {len(hashes)} pictures verified, 0 problems" in check.stdout
    )

    # One byte changed in a stored picture: the auditor says so, and so does the export check.
    victim = evidence / f"{hashes[0]}.jpg"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    audit = jaga_collector(stack, "audit", "verify", "--site", "bangka-barat")
    assert audit.returncode == 1
    assert "1 hash mismatches" in audit.stdout and "changed since it was stored" in audit.stdout
    exported = out / f"{hashes[1]}.jpg"
    exported.write_bytes(exported.read_bytes()[:-1] + b"\x00")
    check = subprocess.run(
        [str(BIN / "jaga-collector"), "audit", "verify-export", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 1 and "does not match its hash" in check.stdout
