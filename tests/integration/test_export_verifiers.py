"""An export is checked the same by three verifiers that share no code: its own verify.sh
(openssl and sha256sum, PATH limited to /usr/bin:/bin), `audit verify-export`, and a Node
verifier written from the format. All pass a genuine export; all refuse each damage.

Here on a chain made in the test (no servers); every case runs sh, openssl and node, so the
file lives with the integration tests for its time."""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from broker.cosignatures import StoredCosignature
from broker.export import Evidence, export
from broker.export_chain import ChainStretch
from broker.export_format import BODY, ChainEnd
from protocol.cosignature import Cosignature, fingerprint
from protocol.cosignature import sign as sign_cosignature
from protocol.models import Checkpoint, Event, EventBody, Kind
from protocol.signing import GENESIS, canonical_bytes, event_hash, sign
from provisioning import certs
from tests.export_tampering import (
    DAMAGE,
    NODE_VERIFIER,
    WITNESS_DAMAGE,
    damaged_copy,
    verify_all,
    witness_damaged_copy,
)
from tests.unit.export_fixtures import PICTURES, Authority, authority, store_with

WITNESS = "bawaslu-bangka-barat"

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


def test_a_witness_asked_for_but_not_in_the_export_fails_all_three_verifiers(
    real: Authority, genuine: Path
) -> None:
    verdicts = verify_all(genuine, real.fingerprint, "ab" * 32)
    assert verdicts.all_fail(), verdicts
    assert "no cosignature of it in this export" in verdicts.sh.stdout


# -- witnesses ---------------------------------------------------------------------------------


def cosigned(key: ed25519.Ed25519PrivateKey, event: Event, time_ms: int) -> StoredCosignature:
    """What the collector stores of a witness's cosignature of event."""
    said = Cosignature(WITNESS, event.site, event.device, event.seq, event_hash(event), time_ms)
    signed = sign_cosignature(said, key)
    return StoredCosignature(WITNESS, event.site, event.device, event.seq, said.head,
                             signed.body.decode(), signed.sig, time_ms * 1_000_000)  # fmt: skip


@pytest.fixture(scope="module")
def witness_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def witnessed(
    real: Authority,
    witness_key: ed25519.Ed25519PrivateKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """An honest export of a long chain: seq 1..7 of 9 (cut at the limit), the subject 3 and 4;
    the witness cosigned seq 4, 7 and, beyond the stretch, 9."""
    root = tmp_path_factory.mktemp("witnessed")
    chain = a_chain(real.unit_key, length=9)
    start = 1_796_000_000_000
    seen = tuple(cosigned(witness_key, chain[n - 1], start + n * 1000) for n in (4, 7, 9))
    stretch = ChainStretch(tuple(chain[:7]), ChainEnd.GENESIS, ChainEnd.LIMIT)
    evidence = Evidence("ev-3", (chain[2], chain[3]), stretch, seen)
    public = witness_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    store = store_with(root / "store", PICTURES)
    try:
        export(evidence, store, certs.cert_pem(real.unit), certs.cert_pem(real.ca),
               root / "case", {WITNESS: public})  # fmt: skip
    finally:
        store.close()
    return root / "case"


def test_an_export_with_its_witness_passes_all_three_and_says_when_the_witness_saw_it(
    real: Authority, witness_key: ed25519.Ed25519PrivateKey, witnessed: Path
) -> None:
    pin = fingerprint(witness_key.public_key())
    assert sorted(p.name for p in (witnessed / "witness" / WITNESS).iterdir()) == [
        "00000000000000000004-001796000004000.body",
        "00000000000000000004-001796000004000.sig",
        "00000000000000000007-001796000007000.body",
        "00000000000000000007-001796000007000.sig",
        "00000000000000000009-001796000009000.body",
        "00000000000000000009-001796000009000.sig",
        "key.pem",
    ]
    verdicts = verify_all(witnessed, real.fingerprint, pin.upper())
    assert verdicts.all_pass(), verdicts
    assert "RESULT: all checks passed: 7 events, 3 pictures, 3 cosignatures" in verdicts.sh.stdout
    assert "OK: 7 events, 3 pictures, 3 cosignatures" in verdicts.node.stdout
    assert "witnesses: 3 cosignatures verified of 1 witnesses named" in verdicts.python.stdout
    saw = "saw the chain to seq 4 by 2026-11-30T00:53:24.000Z"
    for said in (verdicts.sh.stdout, verdicts.node.stdout, verdicts.python.stdout):
        assert saw in said, said
        assert "seq 9 " in said and "beyond the exported chain" in said
    # Without naming the witness, its cosignatures are not counted (nor trusted).
    assert verify_all(witnessed, real.fingerprint).all_pass()


@pytest.mark.parametrize("damage", sorted(WITNESS_DAMAGE))
def test_each_damage_to_the_witness_part_fails_all_three_verifiers(
    damage: str,
    real: Authority,
    witness_key: ed25519.Ed25519PrivateKey,
    witnessed: Path,
    tmp_path: Path,
) -> None:
    folder = witness_damaged_copy(witnessed, tmp_path / "case", damage)
    verdicts = verify_all(folder, real.fingerprint, fingerprint(witness_key.public_key()))
    assert verdicts.all_fail(), verdicts
    assert "Traceback" not in verdicts.python.stderr
    if damage.startswith("a truncated chain"):
        for said in (verdicts.sh.stdout, verdicts.node.stdout, verdicts.python.stdout):
            assert "the chain was cut" in said, said


def test_a_cut_chain_is_the_witness_proof_only_where_the_export_says_it_ends_at_the_head(
    real: Authority, witness_key: ed25519.Ed25519PrivateKey, witnessed: Path, tmp_path: Path
) -> None:
    """The same files with the honest word "limit" pass; with "head" (the newest stored) the
    cosignature of seq 9 shows events after seq 7 existed: all three refuse."""
    folder = tmp_path / "case"
    shutil.copytree(witnessed, folder)
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"ends_at": "limit"', '"ends_at": "head"'))
    verdicts = verify_all(folder, real.fingerprint, fingerprint(witness_key.public_key()))
    assert verdicts.all_fail(), verdicts
    assert "seq 9 at 2026-11-30T00:53:29.000Z, but manifest.json says seq 7" in verdicts.sh.stdout


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


# -- a unit signed by the issuing CA (#19) ------------------------------------------------------


def two_level(tmp_path: Path, real: Authority, *, forge: bool = False) -> Path:
    """An export whose unit certificate the issuing CA signed; forge: an issuing CA of the same
    name whose certificate the pinned root never signed (its own key signs it)."""
    issuing_key = certs.new_key()
    signer_cert, signer_key = real.ca, real.ca_key
    if forge:
        signer_key = certs.new_key()
        lifetime = certs.Validity(real.ca.not_valid_before_utc, real.ca.not_valid_after_utc)
        signer_cert = certs.make_ca(signer_key, "Jaga CA Bangka Barat", lifetime, 9)
    validity = certs.Validity(real.unit.not_valid_before_utc, real.unit.not_valid_after_utc)
    issuing = certs.make_issuing(
        public_key=issuing_key.public_key(), name="Jaga CA Bangka Barat issuing 1",
        root_cert=signer_cert, root_key=signer_key, serial=3, validity=validity,
    )  # fmt: skip
    unit = certs.issue_client(
        subject=real.unit.subject, public_key=real.unit_key.public_key(), ca_cert=issuing,
        ca_key=issuing_key, serial=4, validity=validity,
    )  # fmt: skip
    chain = a_chain(real.unit_key)
    evidence = Evidence(
        "ev-3", (chain[2], chain[3]), ChainStretch(tuple(chain), ChainEnd.GENESIS, ChainEnd.HEAD)
    )
    store = store_with(tmp_path / "store", PICTURES)
    try:
        export(evidence, store, certs.cert_pem(unit), certs.cert_pem(real.ca), tmp_path / "case",
               issuing_cert=certs.cert_pem(issuing))  # fmt: skip
    finally:
        store.close()
    return tmp_path / "case"


def test_a_unit_signed_by_the_issuing_ca_passes_all_three_verifiers(
    real: Authority, tmp_path: Path
) -> None:
    case = two_level(tmp_path, real)
    assert (case / "certs" / "issuing.pem").is_file()
    verdicts = verify_all(case, real.fingerprint)
    assert verdicts.all_pass(), verdicts
    (case / "certs" / "issuing.pem").unlink()  # without the link the unit chains to nothing
    assert verify_all(case, real.fingerprint).all_fail()


def test_an_issuing_ca_the_pinned_root_never_signed_fails_all_three_verifiers(
    real: Authority, tmp_path: Path
) -> None:
    verdicts = verify_all(two_level(tmp_path, real, forge=True), real.fingerprint)
    assert verdicts.all_fail(), verdicts
