"""scripts/install-agent.sh and install-server.sh, run twice into a throwaway root (--root).

Every file they write must land under the root, the second run must change nothing (paths,
modes, content, file times), and what they install must be what the systemd units read.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from agent.config import load_config as load_agent_config
from broker.config import load_config as load_collector_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
BIN = Path(sys.executable).parent
PROVISION = (BIN / "jaga-provision", "--dir")

Listing = dict[str, tuple[str, int, str]]


def listing(root: Path) -> Listing:
    """Every path under root with its type, mode, and content hash (and file time) or target."""
    out: Listing = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = ("file", stat.S_IMODE(st.st_mode), f"{digest} {st.st_mtime_ns}")
    return out


def install(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", str(SCRIPTS / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    return done


def twice(script: str, root: Path, *args: str | Path) -> tuple[str, str]:
    """Run the install twice into root; the second run must leave the same tree."""
    first = install(script, "--root", root, *args)
    assert first.returncode == 0, first.stderr + first.stdout
    after_first = listing(root)
    second = install(script, "--root", root, *args)
    assert second.returncode == 0, second.stderr + second.stdout
    assert listing(root) == after_first
    assert re.search(r"\b0 changes\b", second.stdout), second.stdout
    return first.stdout, second.stdout


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for key, value in re.findall(r"^(\w+)=(.*)$", path.read_text(), flags=re.MULTILINE):
        settings.setdefault(key, []).append(value)
    return settings


# the unit --------------------------------------------------------------------------------


@pytest.fixture
def bundle(registry: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundles" / "jaga-bangka-barat-gudang-01.tar.gz"
    done = subprocess.run(
        [*PROVISION, registry, "bundle", "bangka-barat", "gudang-01", "--out", out],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out


def remade(bundle: Path, out: Path, drop: set[str], **toml: str) -> Path:
    """The bundle without some members, or with agent.toml settings changed."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            if member.name in drop:
                continue
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "agent.toml":
                text = data.decode()
                for key, value in toml.items():
                    text = re.sub(rf"^{key} = .*$", f'{key} = "{value}"', text, flags=re.M)
                data = text.encode()
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


def test_the_agent_install_runs_twice_into_a_throwaway_root_and_changes_nothing_the_second_time(
    bundle: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    outside = listing(bundle.parent)
    first, second = twice("install-agent.sh", root, bundle)
    assert listing(bundle.parent) == outside  # nothing written beside the bundle
    tree = listing(root)
    assert tree["etc/jaga"][:2] == ("dir", 0o750)
    assert tree["var/lib/jaga"][:2] == ("dir", 0o750)
    assert tree["etc/jaga/agent.toml"][:2] == ("file", 0o640)
    assert tree["etc/jaga/device.key"][:2] == ("file", 0o640)
    assert tree["etc/jaga/ca.crt"][:2] == ("file", 0o644)
    assert tree["etc/jaga/device.crt"][:2] == ("file", 0o644)
    for name in ("jaga-agent.service", "jaga-agent-renew.service", "jaga-agent-renew.timer"):
        installed = root / "etc/systemd/system" / name  # the renewal timer: #19
        assert installed.read_bytes() == (REPO / "systemd" / name).read_bytes()
    if shutil.which("systemctl"):
        assert tree["etc/systemd/system/multi-user.target.wants/jaga-agent.service"] == (
            "link",
            0,
            "/etc/systemd/system/jaga-agent.service",
        )
        assert tree["etc/systemd/system/timers.target.wants/jaga-agent-renew.timer"][0] == "link"
    would = [line for line in first.splitlines() if line.startswith("would run")]
    for step in (
        "useradd --system",
        "usermod --append --groups gpio,video jaga",
        "python3 -m venv --system-site-packages /opt/jaga/venv",
        "/opt/jaga/venv/bin/pip install",
        "jaga-agent selftest --config /etc/jaga/agent.toml",
        "systemctl start jaga-agent.service",
        "systemctl start jaga-agent-renew.timer",
    ):
        assert any(step in line for line in would), step
    pip = [line for line in would if "/opt/jaga/venv/bin/pip install" in line]
    assert pip and pip[0].endswith(f" {REPO}"), "a unit gets Jaga without the collector extra"
    again = [line for line in second.splitlines() if line.startswith("would run")]
    assert set(again) <= set(would)
    assert "would run: systemctl daemon-reload" in would and not any(
        "daemon-reload" in x for x in again
    )


def test_what_the_agent_install_puts_down_is_what_its_unit_can_read(
    bundle: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    twice("install-agent.sh", root, bundle)
    unit = unit_settings(root / "etc/systemd/system/jaga-agent.service")
    config_path = unit["ExecStart"][0].split("--config ")[1]
    config = load_agent_config(root / config_path.lstrip("/"))
    # Config, certificates and key: in the ConfigurationDirectory (read-only for the service).
    conf_dir = root / "etc" / unit["ConfigurationDirectory"][0]
    assert config.broker.tls is not None
    for path in (config.broker.tls.ca, config.broker.tls.cert, config.key_path):
        assert path.parent == conf_dir and path.is_file()
    # The outbox: in the StateDirectory, the only place it may write besides its runtime dir.
    assert config.data_dir == Path("/var/lib") / unit["StateDirectory"][0]
    assert unit["WorkingDirectory"] == [str(config.data_dir)]
    assert (root / str(config.data_dir).lstrip("/")).is_dir()
    assert unit["ProtectSystem"] == ["strict"]


def test_without_a_key_the_agent_install_enrols_the_unit_and_waits_for_its_certificate(
    bundle: Path, tmp_path: Path
) -> None:
    field = remade(bundle, tmp_path / "field.tar.gz", {"device.key", "device.crt"})
    done = install("install-agent.sh", "--root", tmp_path / "root", field)
    assert done.returncode == 0, done.stderr
    assert "would run: /opt/jaga/venv/bin/jaga-agent enroll --config /etc/jaga/agent.toml" in (
        done.stdout
    )
    assert "waiting for the certificate" in done.stdout
    assert "selftest" not in done.stdout
    assert not (tmp_path / "root/etc/systemd/system/multi-user.target.wants").exists()


def test_a_bundle_that_keeps_the_outbox_outside_the_state_directory_is_refused(
    bundle: Path, tmp_path: Path
) -> None:
    moved = remade(bundle, tmp_path / "moved.tar.gz", set(), data_dir="/srv/jaga")
    done = install("install-agent.sh", "--root", tmp_path / "root", moved)
    assert done.returncode == 1
    assert 'data_dir = "/srv/jaga"' in done.stderr and "/var/lib/jaga" in done.stderr
    assert not (tmp_path / "root").exists()


# the server ------------------------------------------------------------------------------


@pytest.fixture
def server_registry(registry: Path, tmp_path: Path) -> Path:
    """A copy of the provisioning folder whose broker certificate has been made."""
    copy = tmp_path / "provisioning"
    shutil.copytree(registry, copy)
    done = subprocess.run(
        [*PROVISION, copy, "broker-config", "--out", tmp_path / "laptop"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return copy


def test_the_server_install_runs_twice_into_a_throwaway_root_and_changes_nothing_the_second_time(
    server_registry: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    source = listing(server_registry)
    first, _ = twice("install-server.sh", root, "--registry", server_registry)
    assert listing(server_registry) == source
    tree = listing(root)
    assert tree["etc/mosquitto/jaga"][:2] == ("dir", 0o750)
    assert tree["etc/mosquitto/jaga/server.key"][:2] == ("file", 0o640)
    assert tree["etc/jaga/collector.toml"][:2] == ("file", 0o640)
    assert tree["var/lib/jaga-collector"][:2] == ("dir", 0o750)
    for name in ("jaga-collector.service", "mosquitto.service.d/jaga.conf"):
        installed = root / "etc/systemd/system" / name
        assert installed.read_bytes() == (REPO / "systemd" / name).read_bytes()
    grafana = REPO / "broker/grafana/provisioning"
    if grafana.is_dir():
        dropin = root / "etc/systemd/system/grafana-server.service.d/jaga.conf"
        assert (
            dropin.read_bytes()
            == (REPO / "systemd/grafana-server.service.d/jaga.conf").read_bytes()
        )
        for path in grafana.rglob("*.yaml"):
            rel = path.relative_to(grafana)
            assert (root / "etc/grafana/provisioning" / rel).read_bytes() == path.read_bytes()
    assert "would run: systemctl restart jaga-collector.service" in first
    pip = [line for line in first.splitlines() if "/opt/jaga/venv/bin/pip install" in line]
    assert pip and pip[0].endswith(f" {REPO}[collector]"), "the server gets the collector extra"


def test_the_server_gets_no_private_key_but_the_collectors_and_the_brokers(
    server_registry: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    twice("install-server.sh", root, "--registry", server_registry)
    keys = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.key"))
    assert keys == [
        "etc/jaga/registry/identities/collector-main.key",
        "etc/mosquitto/jaga/server.key",
    ]
    assert (server_registry / "ca/ca.key").exists()  # it was there to leave behind


def test_what_the_server_install_puts_down_is_what_its_units_read(
    server_registry: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    twice("install-server.sh", root, "--registry", server_registry)
    dropin = unit_settings(root / "etc/systemd/system/mosquitto.service.d/jaga.conf")
    conf = root / dropin["ExecStart"][1].split(" -c /")[1]
    for line in conf.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in {"acl_file", "cafile", "certfile", "keyfile", "crlfile"}:
            assert (root / value.lstrip("/")).is_file(), line
    unit = unit_settings(root / "etc/systemd/system/jaga-collector.service")
    config_path = root / unit["ExecStart"][0].split("--config /")[1]
    config = load_collector_config(config_path)
    assert config.data_dir == Path("/var/lib") / unit["StateDirectory"][0]
    assert config.registry_dir == Path("/etc") / unit["ConfigurationDirectory"][0] / "registry"
    assert config.mqtt.tls is not None
    for path in (config.mqtt.tls.ca, config.mqtt.tls.cert, config.mqtt.tls.key):
        assert (root / str(path).lstrip("/")).is_file(), path
    port = tomllib.loads(config_path.read_text())["mqtt"]["port"]
    assert f"listener {port} " in conf.read_text()


def test_a_two_level_registry_brings_the_issuing_key_the_enrolment_endpoint_and_the_kick(
    server_registry: Path, tmp_path: Path
) -> None:
    """#19: the issuing CA's key (not the root's) and the kick identity come to the server, the
    enrolment endpoint and the 30 s kick timer are installed and enabled; the unit gets its
    renewal timer."""
    for args in (("issuing-ca", "create"), ("identity", "add", "collector", "kick")):
        done = subprocess.run([*PROVISION, server_registry, *args], capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    root = tmp_path / "root"
    port = "18883"  # not the default: the kick must speak to this broker's port
    done = install(
        "install-server.sh", "--root", root, "--registry", server_registry, "--port", port
    )
    assert done.returncode == 0, done.stderr + done.stdout
    first = done.stdout
    keys = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.key"))
    assert keys == [
        "etc/jaga/registry/broker/server.key",  # the endpoint's TLS (the broker's certificate)
        "etc/jaga/registry/ca/issuing/1/ca.key",
        "etc/jaga/registry/identities/collector-kick.key",
        "etc/jaga/registry/identities/collector-main.key",
        "etc/mosquitto/jaga/server.key",
    ]
    for name in ("jaga-enrol.service", "jaga-broker-kick.timer"):
        installed = root / "etc/systemd/system" / name
        assert installed.read_bytes() == (REPO / "systemd" / name).read_bytes()
    kick = unit_settings(root / "etc/systemd/system/jaga-broker-kick.service")
    assert kick["ExecStart"][0].endswith(f"broker-kick --broker 127.0.0.1:{port}")
    kick_text = (root / "etc/systemd/system/jaga-broker-kick.service").read_text()
    source_text = (REPO / "systemd/jaga-broker-kick.service").read_text()
    assert kick_text == source_text.replace("127.0.0.1:8883", f"127.0.0.1:{port}")
    assert "chown -R jaga:jaga /etc/jaga/registry" in first
    if shutil.which("systemctl"):
        wants = root / "etc/systemd/system"
        assert (wants / "multi-user.target.wants/jaga-enrol.service").is_symlink()
        assert (wants / "timers.target.wants/jaga-broker-kick.timer").is_symlink()
    else:
        assert "jaga-enrol.service jaga-broker-kick.timer" in first
    # The server renewed a unit since: an older copy must not replace its record.
    live = root / "etc/jaga/registry/ca/issued.toml"
    live.write_text(live.read_text() + '\n[[issued]]\nserial = 99999\nkind = "device"\n')
    again = install(
        "install-server.sh", "--root", root, "--registry", server_registry, "--port", port
    )
    assert again.returncode != 0
    assert "holds 1 certificate(s) your copy lacks" in again.stderr + again.stdout
