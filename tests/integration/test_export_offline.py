"""A real export from the running stack (Mosquitto, InfluxDB, collector, a unit with a
simulated camera) is checked by three verifiers that share no code: its verify.sh with PATH
/usr/bin:/bin, `audit verify-export`, and the Node verifier. All pass it; all refuse each of
a changed picture, body, signature or certificate byte, a dropped or reordered event, and the
export re-signed under a self-made CA (also one named like the real one). A real witness
(`jaga-witness run`) watches the site: named by its fingerprint, its cosignatures in the export
pass all three, and each of a missing, altered or foreign cosignature and a chain truncated
below what it cosigned fails all three."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.cosignatures import cosignatures, first_beyond
from broker.influx_reader import InfluxReader
from devstack.stack import DATABASE, DEMO_UNITS, Stack, jaga
from tests.export_tampering import (
    DAMAGE,
    WITNESS_DAMAGE,
    damaged_copy,
    verify_all,
    witness_damaged_copy,
)
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, registry: Path
) -> tuple[Path, str, str, str]:
    """(the export of a door opening, the CA fingerprint, the collector's export line, the
    witness's fingerprint)."""
    root = tmp_path_factory.mktemp("stack")
    stack = Stack(root, units=DEMO_UNITS, registry_dir=registry, heartbeat_s=2)
    stack.configure_broker()
    try:
        stack.start_broker()
        stack.start_influx()
        stack.start_collector()
        stack.start_witness(cosign_every_s=1.0)
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
            after = int(json.loads(cause)["seq"])
            closed = eventually(
                lambda: [
                    seq
                    for r in door_events(stack)
                    if r["state"] == "closed" and (seq := int(str(r["seq"]))) > after
                ]
            )
            # The witness cosigns the chain beyond the pictures' event, up to the closing.
            assert stack.influx is not None
            reader = InfluxReader(stack.influx.url, DATABASE)
            eventually(
                lambda: cosignatures(reader, "bangka-barat", "gudang-01", max(closed), 10**9),
                timeout=30,
            )
            # What an export carries beyond its chain: each witness's first cosignature past it.
            beyond = first_beyond(reader, "bangka-barat", "gudang-01", after)
            assert [(c.witness, c.seq > after) for c in beyond] == [("bawaslu-bangka-barat", True)]
        door_id = json.loads(cause)["cause"]
        out = root / "export"
        made = stack.collector_cli("evidence", "export", door_id, out)
        assert made.returncode == 0, made.stderr
        pin = jaga("jaga-provision", "--dir", stack.registry, "ca", "fingerprint").stdout.strip()
        witness = jaga("jaga-witness", "fingerprint", "--dir", root / "witness").stdout.strip()
        return out, pin, made.stdout, witness
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
    exported: tuple[Path, str, str, str],
) -> None:
    folder, pin, line, _ = exported
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
    damage: str, exported: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    folder, pin, _, _ = exported
    verdicts = verify_all(damaged_copy(folder, tmp_path / "case", damage), pin)
    assert verdicts.all_fail(), verdicts
    assert "Traceback" not in verdicts.python.stderr


def test_a_real_export_with_the_real_witness_passes_all_three_and_says_when_it_saw_the_events(
    exported: tuple[Path, str, str, str],
) -> None:
    folder, pin, line, witness = exported
    cosigned = sorted((folder / "witness" / "bawaslu-bangka-barat").glob("*.body"))
    assert cosigned and (folder / "witness" / "bawaslu-bangka-barat" / "key.pem").is_file()
    assert f"{len(cosigned)} witness cosignatures" in line
    verdicts = verify_all(folder, pin, witness)
    assert verdicts.all_pass(), verdicts
    assert f", {len(cosigned)} cosignatures" in verdicts.sh.stdout
    assert f"OK: {len(list((folder / 'events').glob('*.body')))} events" in verdicts.node.stdout
    for said in (verdicts.sh.stdout, verdicts.node.stdout, verdicts.python.stdout):
        assert "bawaslu-bangka-barat" in said and "saw the chain to seq" in said, said


@pytest.mark.parametrize("damage", sorted(WITNESS_DAMAGE))
def test_a_real_export_with_its_witness_part_damaged_fails_all_three_verifiers(
    damage: str, exported: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    folder, pin, _, witness = exported
    verdicts = verify_all(witness_damaged_copy(folder, tmp_path / "case", damage), pin, witness)
    assert verdicts.all_fail(), verdicts
    assert "Traceback" not in verdicts.python.stderr
    if damage.startswith("a truncated chain"):
        assert "the chain was cut" in verdicts.sh.stdout, verdicts
