"""What must survive a crash or a race in the certificate lifecycle (#19): a renewal's key and
certificate swap finished (or undone) at the next start whatever the moment of the cut; two
processes issuing at once never share a serial; a failure to issue does not spend the token."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.est_client import NewCertificate, finish_install, install
from provisioning import certs
from provisioning.enrolment import issue_with_new_key
from provisioning.est import EnrolmentAuthority, EstRefused, encode_csr
from provisioning.registry import Registry
from provisioning.tokens import issue_token
from tests.support import provision

WIRING = ("--door", "17:pintu", "--pin-factory", "mock")


def pair(folder: Path, name: str) -> NewCertificate:
    """A key and a self-signed certificate for it (the swap looks only at which key is whose)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    validity = certs.Validity.for_days(1)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(validity.not_before).not_valid_after(validity.not_after)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return NewCertificate(key, cert)


def installed(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "device.key").read_bytes(), (folder / "device.crt").read_bytes()


def pem(new: NewCertificate) -> tuple[bytes, bytes]:
    key = new.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, new.cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def unit(tmp_path: Path) -> tuple[Path, NewCertificate, NewCertificate]:
    old, new = pair(tmp_path, "old"), pair(tmp_path, "new")
    install(old, tmp_path / "device.key", tmp_path / "device.crt")
    return tmp_path, old, new


def test_a_cut_after_both_new_files_are_written_is_finished_at_start(
    unit: tuple[Path, NewCertificate, NewCertificate],
) -> None:
    folder, _old, new = unit
    key_pem, cert_pem = pem(new)
    (folder / "device.key.new").write_bytes(key_pem)
    (folder / "device.crt.new").write_bytes(cert_pem)
    assert finish_install(folder / "device.key", folder / "device.crt")
    assert installed(folder) == (key_pem, cert_pem)
    assert not (folder / "device.key.new").exists() and not (folder / "device.crt.new").exists()


def test_a_cut_between_the_two_renames_is_finished_at_start(
    unit: tuple[Path, NewCertificate, NewCertificate],
) -> None:
    folder, _old, new = unit
    key_pem, cert_pem = pem(new)
    (folder / "device.key").write_bytes(key_pem)  # the key moved in, its certificate not yet
    (folder / "device.crt.new").write_bytes(cert_pem)
    assert finish_install(folder / "device.key", folder / "device.crt")
    assert installed(folder) == (key_pem, cert_pem)


def test_a_cut_before_the_certificate_arrived_keeps_the_old_pair(
    unit: tuple[Path, NewCertificate, NewCertificate],
) -> None:
    folder, old, new = unit
    (folder / "device.key.new").write_bytes(pem(new)[0])
    assert not finish_install(folder / "device.key", folder / "device.crt")
    assert installed(folder) == pem(old)
    assert not (folder / "device.key.new").exists()


def test_a_leftover_certificate_for_another_key_is_never_installed(
    unit: tuple[Path, NewCertificate, NewCertificate],
) -> None:
    folder, old, new = unit
    (folder / "device.crt.new").write_bytes(pem(new)[1])  # no key of its own beside it
    assert not finish_install(folder / "device.key", folder / "device.crt")
    assert installed(folder) == pem(old)
    assert not (folder / "device.crt.new").exists()


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    root = tmp_path / "reg"
    provision(root, "ca", "init", "--name", "Jaga CA Safety")
    provision(root, "issuing-ca", "create")
    provision(root, "site", "add", "s1", "--name", "s1", "--timezone", "Asia/Jakarta",
              "--broker-host", "127.0.0.1")  # fmt: skip
    return Registry(root)


def _issue_many(root: str, devices: list[str]) -> None:
    registry = Registry(Path(root))
    for device in devices:
        issue_with_new_key(registry, "s1", device)


def test_two_processes_issuing_at_once_never_share_a_serial(reg: Registry) -> None:
    names = [f"u-{i}" for i in range(24)]
    for name in names:
        provision(reg.root, "device", "add", "s1", name, *WIRING)
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_issue_many, args=(str(reg.root), names[i::2])) for i in (0, 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    registry = Registry(reg.root)
    serials = [e.serial for e in registry.ca_log().issued if e.kind == "device"]
    assert len(serials) == len(names) == len(set(serials))
    assert {registry.device("s1", n).cert_serial for n in names} == set(serials)


def csr_for(site: str, device: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, certs.ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, site),
        x509.NameAttribute(NameOID.COMMON_NAME, device),
    ])  # fmt: skip
    return encode_csr(x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
        key, hashes.SHA256()))  # fmt: skip


def test_a_failure_to_issue_does_not_spend_the_token(reg: Registry, tmp_path: Path) -> None:
    provision(reg.root, "device", "add", "s1", "u-1", *WIRING)
    token = issue_token(reg, "s1", "u-1").token
    authority = EnrolmentAuthority(reg)
    key = reg.issuing_dir(1) / "ca.key"
    shutil.move(key, tmp_path / "away.key")  # the issuing key is not there: nothing is issued
    with pytest.raises(EstRefused, match="issuing CA's key lives on the server"):
        authority.simpleenroll("s1", token, csr_for("s1", "u-1"))
    shutil.move(tmp_path / "away.key", key)
    done = authority.simpleenroll("s1", token, csr_for("s1", "u-1"))
    assert done.cert.serial_number == reg.device("s1", "u-1").cert_serial
    with pytest.raises(EstRefused, match="already used"):
        authority.simpleenroll("s1", token, csr_for("s1", "u-1"))


def test_an_event_signed_before_a_renewal_is_exported_with_its_own_certificate(
    reg: Registry,
) -> None:
    """After a renewal the unit signs with its new key: an older event's export must carry the
    certificate of the key that signed it, or no verifier could check it."""
    import time

    from broker.export_lineage import lineage
    from protocol.models import EventBody, Kind
    from protocol.signing import GENESIS, sign
    from provisioning.ca import CertificateAuthority

    provision(reg.root, "device", "add", "s1", "u-1", *WIRING)
    ca = CertificateAuthority(reg)
    old_key, new_key = certs.new_key(), certs.new_key()
    before = ca.issue_device("s1", "u-1", old_key.public_key())
    after = ca.issue_device("s1", "u-1", new_key.public_key(), previous=before.cert.serial_number)
    body = EventBody(id="ev-1", site="s1", device="u-1", sensor="pintu", kind=Kind.DOOR,
                     state="open", seq=1, boot_id="b", ts=time.time_ns(), mono_ns=1,
                     clock_synced=True, prev=GENESIS)  # fmt: skip
    assert lineage(reg, [sign(body, old_key)]).unit == before.cert
    assert lineage(reg, [sign(body, new_key)]).unit == after.cert
    both = lineage(reg, [sign(body, old_key), sign(body.model_copy(update={"seq": 2}), new_key)])
    assert (both.unit, both.more_unit_certs) == (after.cert, (before.cert,))


def test_the_agents_unit_finishes_an_interrupted_renewal_before_the_agent_starts(
    reg: Registry, tmp_path: Path
) -> None:
    """jaga-agent.service runs `jaga-agent renew --finish` as root first (ExecStartPre=+)."""
    from typer.testing import CliRunner

    from agent.cli import app

    provision(reg.root, "device", "add", "s1", "u-1", *WIRING)
    folder = tmp_path / "etc-jaga"
    folder.mkdir()
    shutil.copy(reg.device_dir("s1", "u-1") / "agent.toml", folder / "agent.toml")
    old, new = pair(folder, "old"), pair(folder, "new")
    install(old, folder / "device.key", folder / "device.crt")
    key_pem, cert_pem = pem(new)
    (folder / "device.key").write_bytes(key_pem)  # cut between the two renames
    (folder / "device.crt.new").write_bytes(cert_pem)
    done = CliRunner().invoke(app, ["renew", "--finish", "--config", str(folder / "agent.toml")])
    assert done.exit_code == 0, done.output
    assert "finished an interrupted renewal" in done.output
    assert installed(folder) == (key_pem, cert_pem)
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "jaga-agent.service").read_text()
    assert "ExecStartPre=+/opt/jaga/venv/bin/jaga-agent renew --finish" in unit


def test_a_renewal_that_cannot_be_finished_before_the_agent_starts_does_not_keep_it_down(
    reg: Registry, tmp_path: Path
) -> None:
    """`renew --finish` runs as the agent's ExecStartPre: if it failed, systemd would not
    start the agent at all (no siren, no pictures). It warns, and the agent starts with the
    pair in place, as the agent's own start does."""
    from typer.testing import CliRunner

    from agent.cli import app

    provision(reg.root, "device", "add", "s1", "u-1", *WIRING)
    folder = tmp_path / "etc-jaga"
    folder.mkdir()
    shutil.copy(reg.device_dir("s1", "u-1") / "agent.toml", folder / "agent.toml")
    new = pair(folder, "new")
    key_pem, cert_pem = pem(new)
    (folder / "device.key.new").write_bytes(key_pem)
    (folder / "device.crt.new").write_bytes(cert_pem)
    (folder / "device.crt").mkdir()  # what stands there cannot be replaced: an OSError
    (folder / "device.crt" / "x").write_text("x")
    args = ["renew", "--finish", "--config", str(folder / "agent.toml")]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "cannot finish the interrupted renewal" in done.output
    assert "the agent starts with the pair in place" in done.output
    plain = CliRunner().invoke(app, ["renew", "--config", str(folder / "agent.toml")])
    assert plain.exit_code == 1 and "cannot finish the interrupted renewal" in plain.output
