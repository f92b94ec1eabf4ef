"""An export whose stretch crosses renewals (#19): the unit renewed with a new key, and its
issuing CA renewed too, between the exported events. The export carries every certificate
that signed an event of the stretch, and each one's issuing certificate; verify.sh (openssl),
`audit verify-export` and the Node verifier accept every event with one of the unit's
certificates that names the unit, chains to the pinned root at the event's time and verifies
its signature, and refuse the forgeries this opens.

The certificates are the project's own: the root, the issuing CA and its renewal
(provisioning.ca), the unit's enrolment with a token and its renewal with a new key
(provisioning.est, as the EST endpoint answers them), in a registry, at injected times."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.export import Evidence, export
from broker.export_chain import ChainStretch
from broker.export_format import ChainEnd
from broker.export_lineage import lineage
from broker.export_trust import ca_fingerprint
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, event_hash, sign
from provisioning import certs
from provisioning.ca import CertificateAuthority
from provisioning.est import EnrolmentAuthority, encode_csr
from provisioning.registry import Registry
from provisioning.tokens import issue_token
from tests.export_tampering import DAMAGE, bodies, damaged_copy, verify_all
from tests.support import provision
from tests.unit.export_fixtures import PICTURES, store_with

pytestmark = pytest.mark.skipif(not Path("/usr/bin/node").exists(), reason="node not installed")

SITE, DEVICE, OTHER = "bangka-barat", "gudang-01", "gudang-02"
NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Renewed:
    """A registry whose unit renewed (old_key -> new_key) and whose issuing CA renewed, and
    the unit's chain: seq 1-3 signed with the old key 30 days ago (only the first issuing
    certificate valid then), seq 4-7 with the new one 9 days ago (the first had expired)."""

    registry: Registry
    old_key: certs.PrivateKey
    new_key: certs.PrivateKey
    other_key: certs.PrivateKey
    other: x509.Certificate
    chain: tuple[Event, ...]

    @property
    def pin(self) -> str:
        return ca_fingerprint(self.registry.ca_certificate())


def _csr(key: certs.PrivateKey, device: str) -> bytes:
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, certs.ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SITE),
        x509.NameAttribute(NameOID.COMMON_NAME, device),
    ])  # fmt: skip
    return encode_csr(
        x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    )


def _enrol(
    reg: Registry, device: str, key: certs.PrivateKey, when: datetime, *, again: bool = False
) -> x509.Certificate:
    """The unit's enrolment with a one-time token (again: a new token for a registered unit)."""
    if not again:
        provision(reg.root, "device", "add", SITE, device, "--door", "17:pintu",
                  "--pin-factory", "mock")  # fmt: skip
    token = issue_token(reg, SITE, device, now=when).token
    authority = EnrolmentAuthority(reg, days=45)
    return authority.simpleenroll(SITE, token, _csr(key, device), now=when).cert


def _chain(keys: list[certs.PrivateKey], times: list[int]) -> tuple[Event, ...]:
    """Seq 1..7: a door opening at 3, its pictures at 4, motion at the others (no checkpoint)."""
    events: list[Event] = []
    prev = GENESIS
    for seq, (key, ts) in enumerate(zip(keys, times, strict=True), start=1):
        shape: dict[str, object] = {"sensor": "pir", "kind": Kind.MOTION, "state": "motion"}
        if seq == 3:
            shape = {"sensor": "pintu-utama", "kind": Kind.DOOR, "state": "open"}
        if seq == 4:
            shots = tuple(hashlib.sha256(p).hexdigest() for p in PICTURES)
            shape = {"sensor": "kamera", "kind": Kind.CAMERA, "state": "snapshot",
                     "cause": "ev-3", "snapshot_sha256": shots}  # fmt: skip
        body = EventBody(id=f"ev-{seq}", site=SITE, device=DEVICE, seq=seq, boot_id="boot-1",
                         ts=ts, mono_ns=seq, clock_synced=True, prev=prev,
                         **shape)  # type: ignore[arg-type]  # fmt: skip
        events.append(sign(body, key))
        prev = event_hash(body)
    return tuple(events)


def a_registry(root: Path) -> tuple[Registry, CertificateAuthority]:
    """A root made 400 days ago, an issuing CA valid from 60 days ago to 15 days ago, a site."""
    reg = Registry(root)
    CertificateAuthority.init(reg, "Jaga CA Bangka Barat", now=NOW - 400 * DAY)
    ca = CertificateAuthority(reg)
    ca.create_issuing(days=45, now=NOW - 60 * DAY)
    provision(reg.root, "site", "add", SITE, "--name", "Bangka Barat", "--timezone",
              "Asia/Jakarta", "--broker-host", "127.0.0.1")  # fmt: skip
    return reg, ca


@pytest.fixture(scope="module")
def renewed(tmp_path_factory: pytest.TempPathFactory) -> Renewed:
    reg, ca = a_registry(tmp_path_factory.mktemp("registry") / "reg")
    old_key, new_key, other_key = certs.new_key(), certs.new_key(), certs.new_key()
    old = _enrol(reg, DEVICE, old_key, NOW - 50 * DAY)  # valid until 5 days ago
    other = _enrol(reg, OTHER, other_key, NOW - 50 * DAY)
    ca.renew_issuing(days=45, now=NOW - 20 * DAY)  # the same key, a new certificate
    new = EnrolmentAuthority(reg, days=45).simplereenroll(
        SITE, old, _csr(new_key, DEVICE), now=NOW - 10 * DAY
    )
    assert new.cert.serial_number != old.serial_number
    assert [c.serial_number for c in reg.device_certificates(SITE, DEVICE)] == [
        old.serial_number,
        new.cert.serial_number,
    ]
    then, later = _ns(NOW - 30 * DAY), _ns(NOW - 9 * DAY)
    times = [then + 1, then + 2, then + 3, later + 1, later + 2, later + 3, later + 4]
    chain = _chain([old_key] * 3 + [new_key] * 4, times)
    return Renewed(reg, old_key, new_key, other_key, other, chain)


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9


def export_of(renewed: Renewed, dest: Path, chain: tuple[Event, ...] | None = None) -> Path:
    """`evidence export`'s way: the certificates of the events' lineage from the registry."""
    events = chain or renewed.chain
    evidence = Evidence(
        "ev-3", (events[2], events[3]), ChainStretch(events, ChainEnd.GENESIS, ChainEnd.HEAD)
    )
    found = lineage(renewed.registry, events)
    store = store_with(dest.parent / f"{dest.name}-store", PICTURES)
    try:
        export(evidence, store, found.unit_pem, certs.cert_pem(renewed.registry.ca_certificate()),
               dest, issuing_cert=found.issuing_pem, more_units=found.more_units,
               more_issuing=found.more_issuing)  # fmt: skip
    finally:
        store.close()
    return dest


@pytest.fixture(scope="module")
def genuine(renewed: Renewed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_of(renewed, tmp_path_factory.mktemp("renewed") / "case")


def test_an_export_across_a_unit_and_an_issuing_renewal_passes_all_three_verifiers(
    renewed: Renewed, genuine: Path
) -> None:
    reg = renewed.registry
    old, new = reg.device_certificates(SITE, DEVICE)
    issuing = sorted(p.name for p in reg.issuing_dir(1).glob("[0-9]*.crt"))
    assert len(issuing) == 2  # the issuing CA's first certificate and its renewal
    first, renewal = sorted(int(name.removesuffix(".crt")) for name in issuing)
    assert sorted(p.name for p in (genuine / "certs").iterdir()) == sorted([
        "ca.pem", "unit.pem", "issuing.pem", f"unit-{old.serial_number}.pem",
        f"issuing-{first}.pem",
    ])  # fmt: skip
    assert (genuine / "certs" / "unit.pem").read_bytes() == certs.cert_pem(new)
    issuing_pem = x509.load_pem_x509_certificate((genuine / "certs" / "issuing.pem").read_bytes())
    assert issuing_pem.serial_number == renewal
    verdicts = verify_all(genuine, renewed.pin)
    assert verdicts.all_pass(), verdicts
    assert "RESULT: all checks passed: 7 events, 3 pictures, 0 cosignatures" in verdicts.sh.stdout
    assert "export: 7 events, 3 pictures verified, 0 problems" in verdicts.python.stdout


def test_without_the_older_certificates_the_renewed_unit_s_export_fails(
    renewed: Renewed, genuine: Path, tmp_path: Path
) -> None:
    """What an export carried before: one unit certificate, one issuing certificate."""
    for extra in (genuine / "certs").glob("*-*.pem"):
        case = tmp_path / extra.name
        shutil.copytree(genuine, case)
        (case / "certs" / extra.name).unlink()
        verdicts = verify_all(case, renewed.pin)
        assert verdicts.all_fail(), verdicts
        assert "does not chain to the CA at the event's time" in verdicts.sh.stdout or (
            "signature does not verify" in verdicts.sh.stdout
        ), verdicts


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_each_damage_to_an_export_across_renewals_fails_all_three_verifiers(
    damage: str, renewed: Renewed, genuine: Path, tmp_path: Path
) -> None:
    """The damages every export is checked against (tests/export_tampering.py), here."""
    verdicts = verify_all(damaged_copy(genuine, tmp_path / "case", damage), renewed.pin)
    assert verdicts.all_fail(), verdicts
    assert "Traceback" not in verdicts.python.stderr


# -- forgeries the lineage opens --------------------------------------------------------------


def _resign(folder: Path, key: certs.PrivateKey, seqs: range) -> None:
    for body in bodies(folder):
        if int(body.name[:20]) in seqs:
            sig = key.sign(body.read_bytes(), ec.ECDSA(hashes.SHA256()))
            body.with_suffix(".sig").write_bytes(sig)


def another_unit_s_certificate(renewed: Renewed) -> Callable[[Path], None]:
    """gudang-02's genuine certificate slipped in as a lineage certificate, and the newer
    events signed again with gudang-02's key (a compromised neighbour lending its key)."""

    def damage(folder: Path) -> None:
        name = f"unit-{renewed.other.serial_number}.pem"
        (folder / "certs" / name).write_bytes(certs.cert_pem(renewed.other))
        _resign(folder, renewed.other_key, range(4, 8))

    return damage


def another_unit_s_certificate_in_place_of_the_old(renewed: Renewed) -> Callable[[Path], None]:
    """The older certificate replaced by gudang-02's, the older events signed by its key."""

    def damage(folder: Path) -> None:
        for old in (folder / "certs").glob("unit-*.pem"):
            old.unlink()
        name = f"unit-{renewed.other.serial_number}.pem"
        (folder / "certs" / name).write_bytes(certs.cert_pem(renewed.other))
        _resign(folder, renewed.other_key, range(1, 4))

    return damage


def _self_made(renewed: Renewed) -> tuple[certs.PrivateKey, x509.Certificate]:
    """A certificate naming the unit, from a CA of the real one's name the root never signed."""
    ca_key, key = certs.new_key(), certs.new_key()
    real = renewed.registry.ca_certificate()
    lifetime = certs.Validity(real.not_valid_before_utc, real.not_valid_after_utc)
    fake_ca = certs.make_ca(ca_key, "Jaga CA Bangka Barat", lifetime, 7)
    cert = certs.issue_client(
        subject=certs.device_name(SITE, DEVICE), public_key=key.public_key(), ca_cert=fake_ca,
        ca_key=ca_key, serial=99, validity=certs.Validity.for_days(60, NOW - 40 * DAY),
    )  # fmt: skip
    return key, cert


def a_self_made_certificate_signing_events(renewed: Renewed) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        key, cert = _self_made(renewed)
        (folder / "certs" / "unit-99.pem").write_bytes(certs.cert_pem(cert))
        _resign(folder, key, range(2, 4))

    return damage


def a_self_made_certificate_signing_nothing(renewed: Renewed) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        _, cert = _self_made(renewed)
        (folder / "certs" / "unit-99.pem").write_bytes(certs.cert_pem(cert))

    return damage


def an_old_event_signed_with_the_new_key(renewed: Renewed) -> Callable[[Path], None]:
    """Seq 2 (30 days ago) signed again with the new key, whose certificate began 10 days ago."""

    def damage(folder: Path) -> None:
        _resign(folder, renewed.new_key, range(2, 3))

    return damage


def an_older_certificate_behind_a_link(renewed: Renewed) -> Callable[[Path], None]:
    """certs/unit-<serial>.pem a symbolic link to a copy outside certs/ (an export holds plain
    files only: a link may point anywhere on the auditor's disk)."""

    def damage(folder: Path) -> None:
        for old in (folder / "certs").glob("unit-*.pem"):
            outside = folder.parent / f"{folder.name}-{old.name}"
            old.rename(outside)
            old.symlink_to(outside)

    return damage


def an_issuing_certificate_that_is_not_one(renewed: Renewed) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        for link in (folder / "certs").glob("issuing-*.pem"):
            link.write_bytes(link.read_bytes() + b"trailing words\n")

    return damage


NOT_THIS_UNIT = "not of this export's unit"
NOT_ONE = "not one PEM certificate"
UNCHAINED = "does not chain to the CA at the event's time"
VOUCHES_FOR_NONE = "vouches for no event here"
LINEAGE_DAMAGE: dict[str, tuple[Callable[[Renewed], Callable[[Path], None]], str]] = {
    "another unit's certificate beside the lineage": (another_unit_s_certificate, NOT_THIS_UNIT),
    "another unit's certificate in place of the old one": (
        another_unit_s_certificate_in_place_of_the_old,
        NOT_THIS_UNIT,
    ),
    "a self-made certificate signing events": (a_self_made_certificate_signing_events, UNCHAINED),
    "a self-made certificate signing nothing": (
        a_self_made_certificate_signing_nothing,
        VOUCHES_FOR_NONE,
    ),
    "an old event signed with the new key": (an_old_event_signed_with_the_new_key, UNCHAINED),
    "an older certificate behind a symbolic link": (
        an_older_certificate_behind_a_link,
        "certs/unit-",
    ),
    "an issuing certificate with words after it": (an_issuing_certificate_that_is_not_one, NOT_ONE),
}


@pytest.mark.parametrize("damage", sorted(LINEAGE_DAMAGE))
def test_each_lineage_forgery_fails_all_three_verifiers(
    damage: str, renewed: Renewed, genuine: Path, tmp_path: Path
) -> None:
    case = tmp_path / "case"
    shutil.copytree(genuine, case)
    make, says = LINEAGE_DAMAGE[damage]
    make(renewed)(case)
    verdicts = verify_all(case, renewed.pin)
    assert verdicts.all_fail(), verdicts
    assert "Traceback" not in verdicts.python.stderr
    for said in (verdicts.sh.stdout, verdicts.node.stdout, verdicts.python.stdout):
        assert says in said, said


def test_an_event_after_the_old_certificate_expired_signed_with_its_key_fails(
    renewed: Renewed, tmp_path: Path
) -> None:
    """The old key still signing 2 days ago, after its certificate ended (5 days ago): the
    honest exporter carries that certificate (it is the key's), every verifier refuses."""
    chain = list(renewed.chain)
    late = _ns(NOW - 2 * DAY)
    keys = [renewed.old_key] * 3 + [renewed.new_key] * 3 + [renewed.old_key]
    times = [e.ts for e in chain[:6]] + [late]
    case = export_of(renewed, tmp_path / "case", _chain(keys, times))
    old = renewed.registry.device_certificates(SITE, DEVICE)[0]
    exported = case / "certs" / f"unit-{old.serial_number}.pem"
    assert exported.read_bytes() == certs.cert_pem(old)  # the key's own, though expired
    verdicts = verify_all(case, renewed.pin)
    assert verdicts.all_fail(), verdicts
    for said in (verdicts.sh.stdout, verdicts.node.stdout, verdicts.python.stdout):
        assert "00000000000000000007.body" in said and UNCHAINED in said, said


def test_two_certificates_of_one_key_each_vouch_for_the_events_of_their_time(
    tmp_path: Path,
) -> None:
    """A unit enrolled again with the same key (a second token; enrolment does not refuse a
    certified key): both certificates verify its signatures. Seq 1-3 (30 days ago) only the
    first covers; seq 4-7 (9 days ago) both do, and the exporter credits the newer, as every
    verifier does (newest first), so neither carried certificate vouches for nothing."""
    reg, ca = a_registry(tmp_path / "reg")
    key = certs.new_key()
    first = _enrol(reg, DEVICE, key, NOW - 50 * DAY)  # until 5 days ago
    ca.renew_issuing(days=45, now=NOW - 20 * DAY)
    second = _enrol(reg, DEVICE, key, NOW - 20 * DAY, again=True)
    assert first.public_key() == second.public_key()
    then, later = _ns(NOW - 30 * DAY), _ns(NOW - 9 * DAY)
    times = [then + 1, then + 2, then + 3, later + 1, later + 2, later + 3, later + 4]
    events = _chain([key] * 7, times)
    other = certs.new_key()
    case = export_of(Renewed(reg, key, key, other, first, events), tmp_path / "case", events)
    assert (case / "certs" / "unit.pem").read_bytes() == certs.cert_pem(second)
    assert (case / "certs" / f"unit-{first.serial_number}.pem").is_file()
    verdicts = verify_all(case, ca_fingerprint(reg.ca_certificate()))
    assert verdicts.all_pass(), verdicts
