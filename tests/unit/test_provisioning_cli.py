"""jaga-provision as a technician uses it: the whole flow, and every mistake as one clear line."""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import shutil
import stat
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner, Result

from agent.config import load_config
from agent.enroll import enroll
from provisioning import certs
from provisioning.bundle import write_bundle
from provisioning.ca import CertificateAuthority
from provisioning.cli import app
from provisioning.errors import ProvisioningError
from provisioning.registry import Registry


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--dir", str(root)])


def ok(root: Path, *args: str) -> str:
    result = run(root, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


WIRING = shlex.split(
    "--door 17:pintu-utama --pir 27:lorong --tamper 22 --button 5:patroli --camera"
)


@pytest.fixture
def prov(tmp_path: Path) -> Path:
    """A registry with a CA, two sites and unit pintu-depan (not yet certified)."""
    root = tmp_path / "reg"
    ok(root, "ca", "init", "--name", "Jaga CA Test")
    for site in ("gudang-1", "gudang-2"):
        ok(root, "site", "add", site, "--name", f"Gudang {site}", "--timezone", "Asia/Jakarta",
           "--broker-host", "broker.example", "--broker-port", "8884")  # fmt: skip
    ok(root, "device", "add", "gudang-1", "pintu-depan", *WIRING)
    return root


def test_ca_init_keeps_the_key_private_and_out_of_git(prov: Path) -> None:
    assert stat.S_IMODE((prov / "ca" / "ca.key").stat().st_mode) == 0o600
    assert "*.key" in (prov / ".gitignore").read_text().splitlines()
    assert (prov / "ca" / "crl.pem").exists()


def test_the_ca_fingerprint_is_printed_at_init_and_on_demand_as_openssl_computes_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "reg"
    init = ok(root, "ca", "init", "--name", "Jaga CA Test")
    printed = ok(root, "ca", "fingerprint")
    pem = (root / "ca" / "ca.crt").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert printed == hashlib.sha256(der).hexdigest() + "\n", "one line, 64 lower-case hex digits"
    assert re.fullmatch(r"[0-9a-f]{64}\n", printed)
    assert f"fingerprint: {printed.strip()}" in init
    if shutil.which("openssl"):  # the tool an auditor has: the same digits
        shown = subprocess.run(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
            input=pem,
            capture_output=True,
            check=True,
        ).stdout.decode()
        assert shown.split("=", 1)[1].strip().replace(":", "").lower() == printed.strip()


def test_ca_fingerprint_without_a_ca_says_to_run_ca_init(tmp_path: Path) -> None:
    result = run(tmp_path / "empty", "ca", "fingerprint")
    assert result.exit_code == 1 and "ca init" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output


def test_device_add_writes_an_agent_toml_that_the_agent_loads(prov: Path) -> None:
    folder = prov / "devices" / "gudang-1" / "pintu-depan"
    config = load_config(folder / "agent.toml")
    assert (config.site, config.device) == ("gudang-1", "pintu-depan")
    assert (config.broker.host, config.broker.port) == ("broker.example", 8884)
    assert config.broker.tls is not None
    assert config.broker.tls.ca == folder / "ca.crt"
    assert config.broker.tls.cert == folder / "device.crt"
    assert config.broker.tls.key == folder / "device.key"
    assert config.data_dir == Path("/var/lib/jaga")
    assert config.pin_factory == "lgpio"
    wiring = [(s.pin, s.kind, s.name) for s in config.sensors]
    assert wiring == [
        (17, "door", "pintu-utama"),
        (27, "motion", "lorong"),
        (22, "tamper", "tamper"),
        (5, "patrol", "patroli"),
    ]
    record = Registry(prov).device("gudang-1", "pintu-depan")
    assert record.camera and record.cert_serial is None


def test_enrolment_with_a_csr_from_the_unit(prov: Path, tmp_path: Path) -> None:
    unit = tmp_path / "unit-etc-jaga"
    unit.mkdir()
    bundle = tmp_path / "first.tar.gz"
    out = ok(prov, "bundle", "gudang-1", "pintu-depan", "--out", str(bundle), "--no-token")
    assert "no certificate yet" in out
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == ["agent.toml", "ca.crt", "jaga-agent.service"]
        tar.extractall(unit, filter="data")

    csr = enroll(unit / "agent.toml")
    assert csr == unit / "pintu-depan.csr"
    assert stat.S_IMODE((unit / "device.key").stat().st_mode) == 0o600

    out = ok(prov, "device", "sign", str(csr), "--days", "30")
    assert "serial 1" in out
    registry = Registry(prov)
    cert = registry.device_certificate("gudang-1", "pintu-depan")
    assert cert is not None
    assert cert.public_key() == load_key_public(unit / "device.key")
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 <= lifetime.days <= 31
    assert registry.device("gudang-1", "pintu-depan").cert_serial == cert.serial_number

    second = tmp_path / "second.tar.gz"
    ok(prov, "bundle", "gudang-1", "pintu-depan", "--out", str(second))
    with tarfile.open(second) as tar:
        names = sorted(tar.getnames())
    assert names == ["agent.toml", "ca.crt", "device.crt", "jaga-agent.service"]


def load_key_public(path: Path) -> object:
    return serialization.load_pem_private_key(path.read_bytes(), None).public_key()


def test_bench_key_ships_in_the_bundle_readable_by_root_only(prov: Path, tmp_path: Path) -> None:
    ok(prov, "device", "add", "gudang-2", "pos-jaga", "--button", "5:patroli", "--generate-key")
    key = prov / "devices" / "gudang-2" / "pos-jaga" / "device.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    out = tmp_path / "b.tar.gz"
    ok(prov, "bundle", "gudang-2", "pos-jaga", "--out", str(out))
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            "agent.toml",
            "ca.crt",
            "device.crt",
            "device.key",
            "jaga-agent.service",
        ]
        assert members["device.key"].mode == 0o600
        assert members["agent.toml"].mode == 0o644
        service = tar.extractfile("jaga-agent.service")
        assert service is not None and b"jaga-agent" in service.read()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_revoke_puts_every_serial_of_the_unit_in_the_crl(prov: Path) -> None:
    ok(prov, "device", "issue", "gudang-1", "pintu-depan", "--generate-key")
    rotated = certs.new_key().public_key()
    CertificateAuthority(Registry(prov)).issue_device("gudang-1", "pintu-depan", rotated)
    out = ok(prov, "device", "revoke", "gudang-1", "pintu-depan", "--reason", "key-compromise")
    assert "SIGHUP" in out
    crl = x509.load_pem_x509_crl((prov / "ca" / "crl.pem").read_bytes())
    revoked = {r.serial_number: r for r in crl}
    assert set(revoked) == {1, 2}
    reason = revoked[1].extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert crl.is_signature_valid(Registry(prov).ca_certificate().public_key())  # type: ignore[arg-type]
    registry = Registry(prov)
    assert registry.is_revoked(1) and registry.is_revoked(2)
    assert [c.serial_number for c in registry.device_certificates("gudang-1", "pintu-depan")] == [
        1,
        2,
    ]


def test_crl_refresh_moves_next_update(prov: Path) -> None:
    before = x509.load_pem_x509_crl((prov / "ca" / "crl.pem").read_bytes())
    ok(prov, "crl", "refresh", "--days", "700")
    after = x509.load_pem_x509_crl((prov / "ca" / "crl.pem").read_bytes())
    assert after.next_update_utc is not None and before.next_update_utc is not None
    assert after.next_update_utc > before.next_update_utc
    number = after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == 2


def test_identities_and_broker_config(prov: Path, tmp_path: Path) -> None:
    ok(prov, "device", "issue", "gudang-1", "pintu-depan", "--generate-key")
    ok(prov, "identity", "add", "collector", "main")
    nowhere = run(prov, "identity", "add", "operator", "budi")
    assert nowhere.exit_code == 1 and "--site" in nowhere.stderr  # an operator names sites
    unknown = run(prov, "identity", "add", "operator", "budi", "--site", "gudang-9")
    assert unknown.exit_code == 1 and "unknown site" in unknown.stderr
    ok(prov, "identity", "add", "operator", "budi", "--site", "gudang-1")
    ok(prov, "identity", "add", "home-assistant", "rumah", "--site", "gudang-2")
    out_dir = tmp_path / "broker-out"
    ok(prov, "broker-config", "--out", str(out_dir), "--install-dir", "/etc/mosquitto/jaga",
       "--port", "8884", "--host", "10.0.0.5")  # fmt: skip
    conf = (out_dir / "mosquitto.conf").read_text()
    assert "listener 8884 0.0.0.0" in conf
    assert "cafile /etc/mosquitto/jaga/ca.crt" in conf
    assert "crlfile /etc/mosquitto/jaga/crl.pem" in conf
    acl = (out_dir / "acl").read_text()
    assert "user pintu-depan" in acl and "user collector:main" in acl
    assert "user operator:budi" in acl and "topic write jaga/v1/gudang-1/cmd/+" in acl
    assert "operator:budi" in (out_dir / "dynsec.json").read_text()
    assert (
        "topic write jaga/ha/gudang-2/cmd" in acl
        and "jaga/ha/+/cmd" not in acl.split("user home-assistant:rumah")[1]
    )  # its own site's panels only
    assert "use_username_as_clientid true" in conf
    for name in ("ca.crt", "crl.pem", "server.crt", "server.key"):
        assert (out_dir / name).is_file()
    assert stat.S_IMODE((out_dir / "server.key").stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate((prov / "broker" / "server.crt").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert names == {"10.0.0.5", "broker.example"}


def test_broker_config_refuses_a_server_cert_missing_a_new_site_host(prov: Path) -> None:
    ok(prov, "broker-config")
    ok(prov, "site", "add", "gudang-3", "--name", "G3", "--timezone", "Asia/Makassar",
       "--broker-host", "other.example")  # fmt: skip
    result = run(prov, "broker-config")
    assert result.exit_code == 1
    assert "other.example" in result.stderr and "--renew-server-cert" in result.stderr
    ok(prov, "broker-config", "--renew-server-cert")


def test_help_explains_each_command() -> None:
    for args in (
        [],
        ["ca", "init"],
        ["ca", "fingerprint"],
        ["site", "add"],
        ["device", "add"],
        ["device", "sign"],
        ["device", "revoke"],
        ["identity", "add"],
        ["bundle"],
        ["broker-config"],
        ["crl", "refresh"],
    ):
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


# -- mistakes: one line on stderr, exit status 1, never a traceback -----------------------
MISTAKES: dict[str, tuple[str, str]] = {
    # what the technician typed -> what the one error line must say
    "ca twice": ("ca init", "already exists"),
    "unknown site": ("device add gudang-9 x-1 --door 17", "unknown site"),
    "upper-case id": ("device add gudang-1 Pintu --door 17", "not valid"),
    "reserved id": ("device add gudang-1 arming --door 17", "reserved"),
    "duplicate id in another site": (
        "device add gudang-2 pintu-depan --door 17",
        "already used in site 'gudang-1'",
    ),
    "duplicate id in the same site": (
        "device add gudang-1 pintu-depan --door 17",
        "already used in this site",
    ),
    "no sensors": ("device add gudang-1 x-2", "at least one sensor"),
    "pin off the header": ("device add gudang-1 x-3 --door 40:a", "pin 40"),
    "pin twice": ("device add gudang-1 x-4 --door 17:a --pir 17:b", "pin 17"),
    "malformed wiring": ("device add gudang-1 x-5 --door pintu", "PIN:NAME"),
    "bad time zone": (
        "site add gudang-7 --name x --timezone Asia/Atlantis --broker-host h",
        "unknown time zone",
    ),
    "site twice": ("site add gudang-1 --name x --timezone UTC --broker-host h", "already exists"),
    "missing csr": ("device sign /nonexistent/pintu.csr", "no such file"),
    "issue without --generate-key": ("device issue gudang-1 pintu-depan", "--generate-key"),
    "revoke unknown device": ("device revoke gudang-1 nope", "unknown device"),
    "device in the wrong site": (
        "device revoke gudang-2 pintu-depan",
        "registered in site 'gudang-1'",
    ),
    "bad identity name": ("identity add operator 'Budi Santoso'", "not valid"),
    "home assistant naming no site": ("identity add home-assistant rumah", "--all-sites"),
    "negative days": ("crl refresh --days 0", "at least 1"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_one_clear_line_and_exit_1(prov: Path, mistake: str) -> None:
    typed, says = MISTAKES[mistake]
    result = run(prov, *shlex.split(typed))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert says in lines[0]


def test_commands_without_a_ca_say_to_run_ca_init(tmp_path: Path) -> None:
    result = run(tmp_path / "empty", "site", "add", "s", "--name", "x", "--timezone", "UTC",
                 "--broker-host", "h")  # fmt: skip
    assert result.exit_code == 1 and "ca init" in result.stderr
    assert "Traceback" not in result.output


def test_csr_mistakes(prov: Path, tmp_path: Path) -> None:
    ok(prov, "device", "add", "gudang-2", "pos-2", "--pir", "27:lorong")
    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "agent.toml").write_text(
        (prov / "devices" / "gudang-2" / "pos-2" / "agent.toml").read_text()
    )
    csr = enroll(unit / "agent.toml")
    # Registered in gudang-2; claim gudang-1 by editing the CSR: the signature breaks.
    tampered = tmp_path / "tampered.csr"
    tampered.write_bytes(_edit_der(csr.read_bytes(), b"gudang-2", b"gudang-1"))
    not_csr = tmp_path / "junk.csr"
    not_csr.write_text("hello")
    for path, says in ((tampered, "signature"), (not_csr, "not a PEM certificate signing")):
        result = run(prov, "device", "sign", str(path))
        assert result.exit_code == 1 and says in result.stderr, result.output
        assert "Traceback" not in result.output


def test_existing_bundle_is_not_overwritten(prov: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    out.write_text("keep me")
    result = run(prov, "bundle", "gudang-1", "pintu-depan", "--out", str(out))
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert out.read_text() == "keep me"


def _edit_der(pem: bytes, old: bytes, new: bytes) -> bytes:
    """The same PEM block with old replaced by new inside its DER bytes."""
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert der.count(old) == 1
    b64 = base64.b64encode(der.replace(old, new)).decode()
    body = "\n".join(textwrap.wrap(b64, 64))
    return (
        f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n".encode()
    )


def test_the_folder_can_be_named_before_the_command_or_by_environment(tmp_path: Path) -> None:
    before = tmp_path / "before"
    result = CliRunner().invoke(app, ["--dir", str(before), "ca", "init"])
    assert result.exit_code == 0, result.output
    assert (before / "ca" / "ca.crt").exists()
    by_env = tmp_path / "env"
    result = CliRunner().invoke(app, ["ca", "init"], env={"JAGA_PROVISION_DIR": str(by_env)})
    assert result.exit_code == 0, result.output
    assert (by_env / "ca" / "ca.crt").exists()


def test_a_missing_systemd_unit_is_named(prov: Path, tmp_path: Path) -> None:
    with pytest.raises(ProvisioningError, match=r"systemd unit .* not found"):
        write_bundle(
            Registry(prov),
            "gudang-1",
            "pintu-depan",
            tmp_path / "b.tar.gz",
            service_file=tmp_path / "nowhere" / "jaga-agent.service",
        )
    assert not (tmp_path / "b.tar.gz").exists()
