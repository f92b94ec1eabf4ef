"""Certificates the site CA issues, CSR checks, the unit's enrolment and the registry's read API."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.enroll import EnrollError, enroll
from provisioning import certs
from provisioning.agent_toml import write_agent_toml
from provisioning.ca import CertificateAuthority
from provisioning.enrolment import issue_with_new_key, read_csr, sign_csr
from provisioning.errors import ProvisioningError
from provisioning.register import add_device, add_site
from provisioning.registry import Registry
from provisioning.wiring import parse_wiring

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    """CA, sites s1 and s2, unit u1 in s1 and u2 in s2, none certified."""
    registry = Registry(tmp_path / "reg")
    CertificateAuthority.init(registry, "Jaga CA Test", now=NOW)
    for site in ("s1", "s2"):
        add_site(registry, site, name=site, timezone="Asia/Jakarta", broker_host="127.0.0.1")
    add_device(registry, "s1", "u1", parse_wiring(doors=["17:pintu"]))
    add_device(registry, "s2", "u2", parse_wiring(pirs=["27"]))
    return registry


def unit_folder(reg: Registry, site: str, device: str, tmp_path: Path) -> Path:
    """What the unit has after the bundle: agent.toml beside where its key will go."""
    folder = tmp_path / f"unit-{device}"
    folder.mkdir()
    config = (reg.device_dir(site, device) / "agent.toml").read_text()
    (folder / "agent.toml").write_text(config)
    return folder


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType:
    return cert.extensions.get_extension_for_class(kind).value


def test_root_ca_may_sign_leaves_and_one_issuing_ca_below_it(reg: Registry) -> None:
    ca = reg.ca_certificate()
    basic = ext(ca, x509.BasicConstraints)
    assert isinstance(basic, x509.BasicConstraints)
    assert basic.ca and basic.path_length == 1
    usage = ext(ca, x509.KeyUsage)
    assert isinstance(usage, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.not_valid_after_utc - NOW >= timedelta(days=3649)


def test_unit_certificate_names_device_and_site_for_client_auth(reg: Registry) -> None:
    issued = issue_with_new_key(reg, "s1", "u1", days=90, now=NOW)
    cert = issued.cert
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {
        NameOID.COMMON_NAME: "u1",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "s1",
        NameOID.ORGANIZATION_NAME: "Jaga",
    }
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = ext(cert, x509.KeyUsage)
    assert isinstance(usage, x509.KeyUsage)
    assert usage.digital_signature and not usage.key_cert_sign
    basic = ext(cert, x509.BasicConstraints)
    assert isinstance(basic, x509.BasicConstraints) and not basic.ca
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)
    assert cert.not_valid_before_utc <= NOW
    cert.verify_directly_issued_by(reg.ca_certificate())
    assert issued.key_path is not None
    assert stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600


def test_explicit_validity_makes_an_expired_certificate(reg: Registry) -> None:
    validity = certs.Validity(NOW - timedelta(days=10), NOW - timedelta(days=1))
    key = certs.new_key()
    issued = CertificateAuthority(reg).issue_device("s1", "u1", key.public_key(), validity=validity)
    assert issued.cert.not_valid_after_utc == NOW - timedelta(days=1)
    with pytest.raises(ValueError, match="after"):
        certs.Validity(NOW, NOW - timedelta(seconds=1))


def test_service_identities_cannot_clash_with_a_device_id(reg: Registry) -> None:
    ca = CertificateAuthority(reg)
    collector = ca.issue_service("collector", "main", now=NOW).cert
    operator = ca.issue_service("operator", "u1", now=NOW).cert
    cn = NameOID.COMMON_NAME
    assert collector.subject.get_attributes_for_oid(cn)[0].value == "collector:main"
    assert operator.subject.get_attributes_for_oid(cn)[0].value == "operator:u1"
    eku = ext(operator, x509.ExtendedKeyUsage)
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert reg.identities("operator") == ["u1"]
    with pytest.raises(ProvisioningError, match="already has a certificate"):
        ca.issue_service("collector", "main")


def test_broker_certificate_is_for_servers_at_the_named_hosts(reg: Registry) -> None:
    cert = CertificateAuthority(reg).issue_server(["localhost", "127.0.0.1"], now=NOW).cert
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert certs.san_hosts(cert) == {"localhost", "127.0.0.1"}


def test_csr_from_enroll_is_accepted(reg: Registry, tmp_path: Path) -> None:
    unit = unit_folder(reg, "s1", "u1", tmp_path)
    csr_path = enroll(unit / "agent.toml")
    issued = sign_csr(reg, csr_path.read_bytes(), days=30, now=NOW)
    key = serialization.load_pem_private_key((unit / "device.key").read_bytes(), None)
    assert issued.cert.public_key() == key.public_key()
    assert reg.device_certificate("s1", "u1") == issued.cert
    assert reg.device("s1", "u1").key_generated_centrally is False
    assert not (reg.device_dir("s1", "u1") / "device.key").exists()


def test_enroll_refuses_to_replace_a_key_unless_forced(reg: Registry, tmp_path: Path) -> None:
    unit = unit_folder(reg, "s1", "u1", tmp_path)
    enroll(unit / "agent.toml")
    first = (unit / "device.key").read_bytes()
    with pytest.raises(EnrollError, match="already exists"):
        enroll(unit / "agent.toml")
    assert (unit / "device.key").read_bytes() == first
    enroll(unit / "agent.toml", force=True)
    assert (unit / "device.key").read_bytes() != first
    assert stat.S_IMODE((unit / "device.key").stat().st_mode) == 0o600


def test_csr_for_an_unregistered_device_is_refused(reg: Registry) -> None:
    with pytest.raises(ProvisioningError, match="unknown device 'u9' in site 's1'"):
        read_csr(_csr("s1", "u9"), reg)


def test_csr_naming_the_wrong_site_is_refused(reg: Registry) -> None:
    with pytest.raises(ProvisioningError, match="registered in site 's2', not in 's1'"):
        read_csr(_csr("s1", "u2"), reg)


def test_csr_for_an_unknown_site_is_refused(reg: Registry) -> None:
    with pytest.raises(ProvisioningError, match="unknown site 's9'"):
        read_csr(_csr("s9", "u1"), reg)


def test_csr_with_another_curve_is_refused(reg: Registry) -> None:
    with pytest.raises(ProvisioningError, match="P-256"):
        read_csr(_csr("s1", "u1", ec.generate_private_key(ec.SECP384R1())), reg)


def test_csr_without_the_jaga_subject_is_refused(reg: Registry) -> None:
    key = certs.new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "u1")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    with pytest.raises(ProvisioningError, match="CN=<device>, OU=<site>"):
        read_csr(csr.public_bytes(serialization.Encoding.PEM), reg)


def test_device_ids_are_unique_across_sites(reg: Registry) -> None:
    with pytest.raises(ProvisioningError, match="already used in site 's1'"):
        add_device(reg, "s2", "u1", parse_wiring(doors=["17"]))


def test_revoked_unit_gets_no_new_certificate(reg: Registry) -> None:
    ca = CertificateAuthority(reg)
    issued = issue_with_new_key(reg, "s1", "u1", now=NOW)
    assert ca.revoke_device("s1", "u1") == [issued.cert.serial_number]
    assert reg.is_revoked(issued.cert.serial_number)
    with pytest.raises(ProvisioningError, match="revoked"):
        ca.issue_device("s1", "u1", certs.new_key().public_key())


def test_registry_read_api(reg: Registry) -> None:
    assert reg.devices() == [("s1", "u1"), ("s2", "u2")]
    assert reg.device_certificate("s1", "u1") is None
    assert reg.device_certificates("s1", "u1") == []
    ca = CertificateAuthority(reg)
    first = ca.issue_device("s1", "u1", certs.new_key().public_key(), now=NOW).cert
    second = ca.issue_device("s1", "u1", certs.new_key().public_key(), now=NOW).cert
    assert reg.device_certificate("s1", "u1") == second
    assert reg.device_certificates("s1", "u1") == [first, second]
    assert not reg.is_revoked(first.serial_number)
    assert reg.site("s1").timezone == "Asia/Jakarta"
    assert reg.ca_certificate().subject.rfc4514_string() == "CN=Jaga CA Test,O=Jaga"
    with pytest.raises(ProvisioningError, match="unknown site"):
        reg.site("nope")


def test_registry_files_are_plain_toml_and_keys_stay_out_of_git(reg: Registry) -> None:
    issue_with_new_key(reg, "s1", "u1", now=NOW)
    text = (reg.device_dir("s1", "u1") / "device.toml").read_text()
    assert 'name = "pintu"' in text and "cert_serial = 1" in text
    log = (reg.ca_dir / "issued.toml").read_text()  # ca.toml keeps the counters
    assert 'subject = "CN=u1,OU=s1,O=Jaga"' in log
    assert "*.key" in (reg.root / ".gitignore").read_text()


def test_agent_toml_round_trips_through_load_config(reg: Registry, tmp_path: Path) -> None:
    config = write_agent_toml(tmp_path / "agent.toml", reg.site("s2"), reg.device("s2", "u2"))
    assert config.sensors[0].kind == "motion" and config.sensors[0].name == "motion"
    assert config.broker.tls is not None and config.broker.tls.key == tmp_path / "device.key"


def _csr(site: str, device: str, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    key = key or certs.new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(certs.device_name(site, device))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)
