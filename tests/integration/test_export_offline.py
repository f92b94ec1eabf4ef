"""A real export from the running stack (Mosquitto, InfluxDB, collector, a unit with a
simulated camera) is checked by three verifiers that share no code: its verify.sh with PATH
/usr/bin:/bin, `audit verify-export`, and the Node verifier. All pass it; all refuse each of
a changed picture, body, signature or certificate byte, a dropped or reordered event, and the
export re-signed under a self-made CA (also one named like the real one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.stack import DATABASE, DEMO_UNITS, Stack, jaga
from tests.export_tampering import DAMAGE, damaged_copy, verify_all
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> tuple[Path, str, str]:
    """(the export of a door opening, the CA fingerprint, the collector's export line)."""
    root = tmp_path_factory.mktemp("stack")
    stack = Stack(root, units=DEMO_UNITS, registry_dir=registry, heartbeat_s=2)
    stack.configure_broker()
    try:
        stack.start_broker()
        stack.start_influx()
        stack.start_collector()
        with LiveAgent(stack.unit_dir("gudang-01") / "agent.toml") as unit:
            eventually(lambda: unit.agent.camera is not None and unit.agent.camera.frames_seen >= 4)
            unit.set("pintu-utama", True)
            snapshots = eventually(
                lambda: [r for r in camera_rows(stack) if r["state"] == "snapshot"], timeout=30
            )
            cause = str(snapshots[0]["raw"])
            evidence = root / "collector" / "data" / "evidence"
            shots = json.loads(cause)["snapshot_sha256"]
            eventually(lambda: all((evidence / f"{h}.jpg").exists() for h in shots), timeout=30)
            unit.set("pintu-utama", False)  # an event after the pictures' one
            eventually(lambda: any(r["state"] == "closed" for r in door_events(stack)))
        door_id = json.loads(cause)["cause"]
        out = root / "export"
        made = stack.collector_cli("evidence", "export", door_id, out)
        assert made.returncode == 0, made.stderr
        pin = jaga("jaga-provision", "--dir", stack.registry, "ca", "fingerprint").stdout.strip()
        return out, pin, made.stdout
    finally:
        stack.stop_all()


def camera_rows(stack: Stack) -> list[dict[str, object]]:
    assert stack.influx is not None
    return stack.influx.query(
        'SELECT * FROM "event" WHERE "device" = \'gudang-01\' AND "kind" = \'camera\'',
        db=DATABASE,
    )


def door_events(stack: Stack) -> list[dict[str, object]]:
    assert stack.influx is not None
    return stack.influx.query(
        'SELECT * FROM "event" WHERE "device" = \'gudang-01\' AND "kind" = \'door\'',
        db=DATABASE,
    )


def test_a_real_export_passes_verify_sh_verify_export_and_the_node_verifier(
    exported: tuple[Path, str, str],
) -> None:
    folder, pin, line = exported
    assert "exported" in line and "verify.sh" in line
    events = sorted((folder / "events").glob("*.body"))
    assert len(events) >= 3, "the unit's chain around the opening, not the opening alone"
    verdicts = verify_all(folder, pin)
    assert verdicts.all_pass(), verdicts
    pictures = len(list((folder / "pictures").iterdir()))
    assert pictures >= 3
    assert (
        f"RESULT: all checks passed: {len(events)} events, {pictures} pictures, 0 cosignatures"
        in verdicts.sh.stdout
    )


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_real_export_damaged_fails_all_three_verifiers(
    damage: str, exported: tuple[Path, str, str], tmp_path: Path
) -> None:
    folder, pin, _ = exported
    verdicts = verify_all(damaged_copy(folder, tmp_path / "case", damage), pin)
    assert verdicts.all_fail(), verdicts
    assert "Traceback" not in verdicts.python.stderr
