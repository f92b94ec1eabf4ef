"""One command on the unit: `device add --bundle` puts a one-time token in the SD card's bundle,
and the unit enrols with it against the real endpoint (TLS with the site CA); the install
script takes the token from the bundle and goes on to the selftest and the service in the
same run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provisioning.ca import CertificateAuthority
from provisioning.est_server import EstServer, make_server
from provisioning.registry import Registry
from tests.support import provision, served

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    root = tmp_path / "reg"
    provision(root, "ca", "init", "--name", "Jaga CA Bundle")
    provision(root, "site", "add", "gudang-1", "--name", "g", "--timezone", "Asia/Jakarta",
              "--broker-host", "127.0.0.1")  # fmt: skip
    registry = Registry(root)
    CertificateAuthority(registry).issue_server(["127.0.0.1", "localhost"])
    return registry


@pytest.fixture
def server(reg: Registry) -> Iterator[EstServer]:
    with served(make_server(reg, "127.0.0.1", 0, days=30)) as srv:
        yield srv


def added_with_bundle(reg: Registry, out: Path) -> None:
    provision(reg.root, "device", "add", "gudang-1", "pintu-depan", "--door", "17:pintu",
              "--pin-factory", "mock", "--bundle", str(out))  # fmt: skip


def enrol(unit: Path, server: EstServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "jaga-agent", "enroll", "--config", unit / "agent.toml", "--token-file",
         unit / "enrol.token", "--server", f"https://127.0.0.1:{server.port}", "--force"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_the_bundle_of_device_add_enrols_its_unit_with_one_command_and_only_once(
    tmp_path: Path, reg: Registry, server: EstServer
) -> None:
    bundle = tmp_path / "jaga-gudang-1-pintu-depan.tar.gz"
    added_with_bundle(reg, bundle)
    assert bundle.stat().st_mode & 0o777 == 0o600  # it holds the token
    unit = tmp_path / "etc-jaga"
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == [
            "agent.toml", "ca.crt", "enrol.token", "jaga-agent.service",
        ]  # fmt: skip
        tar.extractall(unit, filter="data")
    token = (unit / "enrol.token").read_text().strip()
    folder = reg.device_dir("gudang-1", "pintu-depan")
    assert not any(token in p.read_text(errors="replace") for p in reg.root.rglob("*.*") if
                   p.is_file())  # fmt: skip
    # the paths the install script gives it: beside agent.toml
    toml = (unit / "agent.toml").read_text().replace("/etc/jaga", str(unit))
    (unit / "agent.toml").write_text(toml)

    done = enrol(unit, server)
    assert done.returncode == 0, done.stderr
    key = serialization.load_pem_private_key((unit / "device.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((unit / "device.crt").read_bytes())
    assert cert.public_key() == key.public_key()
    assert reg.device("gudang-1", "pintu-depan").cert_serial == cert.serial_number
    assert not (folder / "device.key").exists()

    again = enrol(unit, server)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "jaga-agent: enrolment refused: this enrolment token was already used"
    ]


def test_the_install_script_enrols_with_the_bundles_token_and_starts_in_the_same_run(
    tmp_path: Path, reg: Registry
) -> None:
    bundle = tmp_path / "bundles" / "jaga-gudang-1-pintu-depan.tar.gz"
    added_with_bundle(reg, bundle)
    root = tmp_path / "root"
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    runs = [
        subprocess.run(
            ["bash", REPO / "scripts" / "install-agent.sh", "--root", root, bundle],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        for _ in range(2)
    ]
    first = runs[0].stdout
    assert runs[0].returncode == 0, runs[0].stderr + first
    assert re.search(
        r"would run: /opt/jaga/venv/bin/jaga-agent enroll --config /etc/jaga/agent.toml "
        r"--token-file \S+/etc/jaga/\.enrol-token\.\w+",
        first,
    ), first
    assert "waiting for the certificate" not in first
    assert "jaga-agent selftest --config /etc/jaga/agent.toml" in first
    assert "would run: systemctl start jaga-agent.service" in first
    assert not list((root / "etc/jaga").glob(".enrol-token.*"))  # the token file is gone
    assert re.search(r"\b0 changes\b", runs[1].stdout), runs[1].stdout
