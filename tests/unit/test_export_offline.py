"""An export is checked the same by three verifiers that share no code: its own verify.sh
(openssl and sha256sum, PATH limited to /usr/bin:/bin), `audit verify-export`, and a Node
verifier written from the format. All pass a genuine export; all refuse each damage."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest

from broker.export import Evidence, export
from broker.export_chain import ChainStretch
from broker.export_format import BODY, ChainEnd
from protocol.models import Checkpoint, Event, EventBody, Kind
from protocol.signing import GENESIS, canonical_bytes, event_hash, sign
from provisioning import certs
from tests.export_tampering import DAMAGE, NODE_VERIFIER, damaged_copy, verify_all
from tests.unit.export_fixtures import PICTURES, Authority, authority, store_with

pytestmark = pytest.mark.skipif(not Path("/usr/bin/node").exists(), reason="node not installed")


def a_chain(key: certs.PrivateKey, length: int = 7) -> list[Event]:
    """A unit's chain from seq 1: checkpoints at 1 and 7 (inputs named like body fields, to
    trip a careless reader), a door opening at seq 3, its pictures at 4, motion between."""
    events: list[Event] = []
    prev, when = GENESIS, time.time_ns()
    for seq in range(1, length + 1):
        shape: dict[str, object] = {"sensor": "pir", "kind": Kind.MOTION, "state": "motion"}
        if seq in (1, length):
            tricky = {"prev": "closed", "seq": "still", "site": "normal", "ts": "open"}
            point = Checkpoint(interval_s=300, uptime_s=seq, sensors=tricky)
            shape = {
                "sensor": "unit",
                "kind": Kind.CHECKPOINT,
                "state": "armed",
                "checkpoint": point,
            }
        if seq == 3:
            shape = {"sensor": "pintu-utama", "kind": Kind.DOOR, "state": "open"}
        if seq == 4:
            shots = tuple(hashlib.sha256(p).hexdigest() for p in PICTURES)
            shape = {"sensor": "kamera", "kind": Kind.CAMERA, "state": "snapshot",
                     "cause": "ev-3", "snapshot_sha256": shots}  # fmt: skip
        body = EventBody(id=f"ev-{seq}", site="bangka-barat", device="gudang-01", seq=seq,
                         boot_id="boot-1", ts=when + seq, mono_ns=seq, clock_synced=True,
                         prev=prev, **shape)  # type: ignore[arg-type]  # fmt: skip
        events.append(sign(body, key))
        prev = event_hash(body)
    return events


@pytest.fixture(scope="module")
def real() -> Authority:
    return authority()


@pytest.fixture(scope="module")
def genuine(real: Authority, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genuine")
    chain = a_chain(real.unit_key)
    evidence = Evidence(
        "ev-3", (chain[2], chain[3]), ChainStretch(tuple(chain), ChainEnd.GENESIS, ChainEnd.HEAD)
    )
    store = store_with(root / "store", PICTURES)
    try:
        export(evidence, store, certs.cert_pem(real.unit), certs.cert_pem(real.ca), root / "case")
    finally:
        store.close()
    return root / "case"


def test_a_genuine_export_passes_all_three_verifiers(real: Authority, genuine: Path) -> None:
    verdicts = verify_all(genuine, real.fingerprint)
    assert verdicts.all_pass(), verdicts
    assert "RESULT: all checks passed: 7 events, 3 pictures, 0 cosignatures" in verdicts.sh.stdout
    assert "OK: 7 events, 3 pictures, 0 cosignatures" in verdicts.node.stdout
    assert "export: 7 events, 3 pictures verified, 0 problems" in verdicts.python.stdout


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_each_damage_fails_all_three_verifiers(
    damage: str, real: Authority, genuine: Path, tmp_path: Path
) -> None:
    folder = damaged_copy(genuine, tmp_path / "case", damage)
    verdicts = verify_all(folder, real.fingerprint)
    assert verdicts.all_fail(), verdicts
    assert "Traceback" not in verdicts.python.stderr


def test_a_witness_asked_for_but_not_in_the_export_fails_verify_sh(
    real: Authority, genuine: Path
) -> None:
    import subprocess

    done = subprocess.run(
        ["/bin/sh", str(genuine / "verify.sh"), real.fingerprint, "ab" * 32],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "no cosignature" in done.stdout


def test_the_body_form_is_the_same_in_python_verify_sh_and_the_node_verifier(
    real: Authority, genuine: Path
) -> None:
    """One grammar, three spellings: a new field or kind must change all of them."""
    script = (genuine / "verify.sh").read_text()
    node = NODE_VERIFIER.read_text()
    kinds = "|".join(sorted(k.value for k in Kind))
    assert f"KINDS='{kinds}'" in script
    assert f'"kind":"({kinds})"' in node
    assert all(f"{name!r}" for name in EventBody.model_fields)
    for name in EventBody.model_fields:
        assert f'"{name}"' in BODY.pattern and f'"{name}"' in script and f'"{name}"' in node, name
    for event in a_chain(real.unit_key):
        assert BODY.fullmatch(canonical_bytes(event).decode())
    assert re.search(r"\\\{\"boot_id\"", BODY.pattern)


def test_the_readme_states_the_sha256_of_the_verify_sh_every_export_carries() -> None:
    """Auditors compare verify.sh with the README's hash: a change to it must change both."""
    script = Path(__file__).parents[2] / "broker" / "export_verify.sh.tmpl"
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"`sha256sum` = `{hashlib.sha256(script.read_bytes()).hexdigest()}`" in readme
