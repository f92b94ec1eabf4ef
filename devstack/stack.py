"""A whole Jaga site on loopback — provisioning, Mosquitto, InfluxDB, collector, simulated
units — for the demo, the integration tests and the benchmarks. Every part is the real program.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.enrolment import EnrolServerProcess, keys_outside_units, token_enrolments
from devstack.forwarder import V2WriteForwarder
from devstack.influx import InfluxDB
from devstack.mosquitto import Mosquitto
from devstack.ports import free_port
from devstack.process import ManagedProcess

BIN = Path(sys.executable).parent
SCENARIOS = Path(__file__).parent / "scenarios"
DEMO_SITE = "bangka-barat"
DEMO_WITNESS = "bawaslu-bangka-barat"
DATABASE = "jaga"


@dataclass(frozen=True)
class UnitSpec:
    """A unit to enrol: its id, its wiring as `jaga-provision device add` options, a scenario."""

    device: str
    wiring: tuple[str, ...]
    scenario: Path | None = None


DEMO_UNITS = (
    UnitSpec(
        "gudang-01",
        ("--door", "17:pintu-utama", "--pir", "27:lorong", "--tamper", "22", "--camera"),
        SCENARIOS / "gudang-01.toml",
    ),
    UnitSpec(
        "gudang-02",
        ("--door", "17:pintu-belakang", "--pir", "27:gudang", "--tamper", "22", "--camera"),
        SCENARIOS / "gudang-02.toml",
    ),
    UnitSpec(
        "pos-jaga-01",
        ("--button", "5:patroli", "--door", "17:pintu-pos", "--pir", "27:halaman"),
        SCENARIOS / "pos-jaga-01.toml",
    ),
)


class ProvisionFailed(RuntimeError):
    pass


def jaga(tool: str, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one of the project's console scripts the way a person would."""
    cmd = [str(BIN / tool), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ProvisionFailed(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}{done.stdout}"
        )
    return done


class CollectorProcess(ManagedProcess):
    """`jaga-collector run` as a child process; ready once it has subscribed."""

    def __init__(self, config: Path, log_path: Path) -> None:
        super().__init__("collector", log_path)
        self.config = config

    def command(self) -> list[str]:
        return [str(BIN / "jaga-collector"), "run", "--config", str(self.config)]

    def is_ready(self) -> bool:
        return "subscribed to" in self.log_tail(200)


class WitnessProcess(ManagedProcess):
    """`jaga-witness run` as a child process; ready once it has subscribed."""

    def __init__(self, config: Path, log_path: Path) -> None:
        super().__init__("witness", log_path)
        self.config = config

    def command(self) -> list[str]:
        return [str(BIN / "jaga-witness"), "run", "--config", str(self.config)]

    def is_ready(self) -> bool:
        return "subscribed to" in self.log_tail(200)


class AgentProcess(ManagedProcess):
    """`jaga-agent simulate` as a child process; ready once connected to the broker."""

    def __init__(
        self, config: Path, scenario: Path, log_path: Path, seconds: float = 0, online: bool = True
    ) -> None:
        super().__init__(f"agent-{config.parent.name}", log_path)
        self.config = config
        self.scenario = scenario
        self.seconds = seconds
        self.online = online

    def command(self) -> list[str]:
        return [
            str(BIN / "jaga-agent"),
            "simulate",
            "--config",
            str(self.config),
            "--scenario",
            str(self.scenario),
            "--seconds",
            str(self.seconds),
        ]

    def is_ready(self) -> bool:
        """Connected, or (when the broker is meant to be away) at least recording events."""
        return ("connected to" if self.online else "event seq=") in self.log_tail(200)


@dataclass
class Stack:
    """One site's worth of real processes under `root`."""

    root: Path
    units: tuple[UnitSpec, ...] = DEMO_UNITS
    site: str = DEMO_SITE
    heartbeat_s: int = 10
    broker_port: int = field(default_factory=free_port)
    mosquitto: Mosquitto | None = None
    influx: InfluxDB | None = None
    forwarder: V2WriteForwarder | None = None
    collector: CollectorProcess | None = None
    witness: WitnessProcess | None = None
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    registry_dir: Path | None = None
    alerts: dict[str, Any] | None = None
    """The collector's [alerts] section (arming, rules, notification routes)."""
    web: dict[str, Any] | None = None
    """The collector's [web] section (the guard post's page)."""
    collector_settings: dict[str, Any] = field(default_factory=dict)
    """More top-level keys of collector.toml (e.g. evidence_grace_s)."""
    checkpoint_s: int | None = None
    """The units' signed checkpoint period (agent.toml `checkpoint_s`); None: the bundle's
    own (the agent's default, 300 s)."""
    enrol: bool = False
    """True: as on a real site, each unit's bundle carries a one-time token and the unit
    makes its own key and enrols with `jaga-agent enroll --token-file` against a running
    enrolment endpoint (start_enrolment, enrol_units). False (tests): keys made centrally by
    `device add --generate-key`, which is faster."""
    enrol_server: EnrolServerProcess | None = None

    @property
    def registry(self) -> Path:
        return self.registry_dir or self.root / "registry"

    def unit_dir(self, device: str) -> Path:
        return self.root / "units" / device

    def bundle_path(self, device: str) -> Path:
        return self.root / "bundles" / f"jaga-{self.site}-{device}.tar.gz"

    # provisioning --------------------------------------------------------------------

    def provision(self) -> None:
        """Enrol the site and configure the broker the way a technician would."""
        self.provision_registry()
        self.configure_broker()

    def provision_registry(self) -> None:
        """CA, site, units and service identities, made with `jaga-provision`."""
        reg = ("--dir", self.registry)
        jaga("jaga-provision", *reg, "ca", "init", "--name", "Jaga demo CA")
        if self.enrol:  # as on a real site: the issuing CA signs units, the root stays aside
            jaga("jaga-provision", *reg, "issuing-ca", "create")
        jaga(
            "jaga-provision",
            *reg,
            "site",
            "add",
            self.site,
            "--name",
            "Gudang logistik pemilu Bangka Barat",
            "--timezone",
            "Asia/Jakarta",
            "--broker-host",
            "127.0.0.1",
            "--broker-port",
            str(self.broker_port),
        )
        for unit in self.units:
            # enrol: the bundle for the SD card, with its one-time token; else the bench key.
            how = ("--bundle", self.bundle_path(unit.device)) if self.enrol else ("--generate-key",)
            jaga(
                "jaga-provision",
                *reg,
                "device",
                "add",
                self.site,
                unit.device,
                *unit.wiring,
                "--pin-factory",
                "mock",
                *how,
            )
        jaga("jaga-provision", *reg, "identity", "add", "collector", "main")
        # One certificate, one connection (the broker binds the client id to it): the operator
        # who arms from the CLI and the screens that watch hold separate identities.
        for operator in ("demo", "watch"):
            jaga(
                "jaga-provision", *reg, "identity", "add", "operator", operator, "--site", self.site
            )
        # An independent witness's MQTT identity: read the site's events, publish its own topic.
        jaga(
            "jaga-provision", *reg, "identity", "add", "witness", DEMO_WITNESS, "--site", self.site
        )

    def collector_identity(self, name: str) -> None:
        """A collector certificate of its own for a second collector (two connections with one
        certificate kick each other); the running broker reloads its ACL."""
        if (self.registry / "identities" / f"collector-{name}.crt").exists():
            return
        jaga("jaga-provision", "--dir", self.registry, "identity", "add", "collector", name)
        self.configure_broker()
        if self.mosquitto is not None:
            before = self.mosquitto.log_tail(1_000_000).count("Reloading config.")
            self.mosquitto.reload()
            deadline = time.monotonic() + 10
            while self.mosquitto.log_tail(1_000_000).count("Reloading config.") <= before:
                if time.monotonic() > deadline:
                    raise ProvisionFailed("the broker did not reload its ACL")
                time.sleep(0.02)

    def configure_broker(self) -> None:
        """This stack's broker config and the units' config files, from the registry."""
        reg = ("--dir", self.registry)
        for unit in self.units:
            self._unpack_unit(unit.device)
        user = ("--user", "root") if os.geteuid() == 0 else ()
        jaga(
            "jaga-provision",
            *reg,
            "broker-config",
            "--out",
            self.root / "broker",
            "--port",
            str(self.broker_port),
            "--bind",
            "127.0.0.1",
            "--persistence-dir",
            self.root / "broker" / "data",
            *user,
        )
        (self.root / "broker" / "data").mkdir(parents=True, exist_ok=True)

    def _unpack_unit(self, device: str) -> None:
        """What the bundle puts on the SD card, with the outbox in a folder of ours."""
        src = self.registry / "devices" / self.site / device
        dst = self.unit_dir(device)
        dst.mkdir(parents=True, exist_ok=True)
        if self.enrol and self.bundle_path(device).exists():
            with tarfile.open(self.bundle_path(device)) as tar:
                tar.extractall(dst, members=[
                    m for m in tar.getmembers() if m.name in ("ca.crt", "enrol.token")
                ], filter="data")  # fmt: skip
        config = tomllib.loads((src / "agent.toml").read_text())
        config["data_dir"] = str(dst / "data")
        config["heartbeat_s"] = self.heartbeat_s
        if self.checkpoint_s is not None:
            config["checkpoint_s"] = self.checkpoint_s
        config["broker"]["port"] = self.broker_port
        if "camera" in config:  # no camera on this machine: real JPEGs from the simulator
            config["camera"].update(
                kind="simulated", frame_size=[320, 240], still_size=[960, 540], after_s=2.0
            )
        config["broker"]["tls"] = {
            "ca": str(self.registry / "ca" / "ca.crt"),
            "cert": str(src / "device.crt"),
            "key": str(src / "device.key"),
        }
        if self.enrol:  # the key is made on the unit, the certificate comes to it
            config["broker"]["tls"] = {
                "ca": str(dst / "ca.crt"),
                "cert": str(dst / "device.crt"),
                "key": str(dst / "device.key"),
            }
        (dst / "agent.toml").write_text(tomli_w.dumps(config))

    # enrolment (enrol=True) ------------------------------------------------------------

    def start_enrolment(self) -> EnrolServerProcess:
        """The site's enrolment endpoint on loopback, with the broker's certificate."""
        self.enrol_server = EnrolServerProcess(
            self.registry, free_port(), self.root / "enrol" / "enrol-server.log", BIN
        )
        self.enrol_server.start(timeout=30)
        return self.enrol_server

    def enrol_units(self) -> dict[str, float]:
        """Each unit runs `jaga-agent enroll --token-file` with its bundle's token, as the
        install script does; the spent token file goes. Seconds each took, by unit."""
        assert self.enrol_server is not None
        took = {}
        for unit in self.units:
            folder = self.unit_dir(unit.device)
            token = folder / "enrol.token"
            started = time.monotonic()
            jaga("jaga-agent", "enroll", "--config", folder / "agent.toml", "--token-file",
                 token, "--server", self.enrol_server.url)  # fmt: skip
            took[unit.device] = time.monotonic() - started
            token.unlink()
        return took

    def enrolment_check(self) -> tuple[int, int]:
        """(units enrolled by one-time token whose key is on the unit and whose registry
        certificate is for that key, unit keys found anywhere outside the unit folders)."""
        by_token = token_enrolments(self.registry)
        enrolled = 0
        for unit in self.units:
            key_path = self.unit_dir(unit.device) / "device.key"
            kept = self.registry / "devices" / self.site / unit.device / "device.crt"
            if not key_path.exists() or not kept.exists():
                continue
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            cert = x509.load_pem_x509_certificate(kept.read_bytes())
            if (self.site, unit.device) in by_token and cert.public_key() == key.public_key():
                enrolled += 1
        have_keys = [
            self.unit_dir(u.device)
            for u in self.units
            if (self.unit_dir(u.device) / "device.key").exists()
        ]
        check = keys_outside_units(self.root, have_keys, self.registry)
        return enrolled, len(check.found_elsewhere)

    def collector_config(self, client_id: str = "jaga-collector-1", identity: str = "main") -> Path:
        """collector.toml with the identity's certificate (the broker takes the client id from
        it, so client_id only names the collector in its own figures)."""
        assert self.forwarder is not None and self.influx is not None
        ident = self.registry / "identities"
        path = self.root / "collector" / "collector.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "data_dir": str(self.root / "collector" / "data"),
            "registry_dir": str(self.registry),
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.broker_port,
                "client_id": client_id,
                "tls": {
                    "ca": str(self.registry / "ca" / "ca.crt"),
                    "cert": str(ident / f"collector-{identity}.crt"),
                    "key": str(ident / f"collector-{identity}.key"),
                },
            },
            "influx": {
                "url": self.forwarder.url,
                "bucket": f"{DATABASE}/autogen",
                "query_url": self.influx.url,
                "database": DATABASE,
            },
        }
        config.update(self.collector_settings)
        if self.alerts is not None:
            config["alerts"] = self.alerts
        if self.web is not None:
            config["web"] = self.web
        path.write_text(tomli_w.dumps(config))
        return path

    def witness_config(self, **settings: Any) -> Path:
        """What a witness sets up for itself: its own key (`jaga-witness init`), the CA
        fingerprint published in advance, a copy of the registry's certificates (no keys),
        and witness.toml; `settings` override its top-level keys (e.g. cosign_every_s)."""
        home = self.root / "witness"
        if not (home / "witness.key").exists():
            jaga("jaga-witness", "init", "--name", DEMO_WITNESS, "--dir", home)
        # The witness hands its public key to the site, so exports carry it (never trusted:
        # auditors check it against the fingerprint the witness published).
        jaga("jaga-provision", "--dir", self.registry, "identity", "witness-key", DEMO_WITNESS,
             home / "witness.pub")  # fmt: skip
        copy = home / "registry"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.registry / "ca", copy / "ca", ignore=shutil.ignore_patterns("*.key"))
        shutil.copytree(
            self.registry / "devices", copy / "devices", ignore=shutil.ignore_patterns("*.key")
        )
        pin = jaga("jaga-provision", "--dir", self.registry, "ca", "fingerprint").stdout.strip()
        ident = self.registry / "identities"
        config: dict[str, Any] = {
            "name": DEMO_WITNESS,
            "key": str(home / "witness.key"),
            "data_dir": str(home / "data"),
            "ca_fingerprint": pin,
            "registry_dir": str(copy),
            "sites": [self.site],
            "cosign_every_s": 5.0,
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.broker_port,
                "tls": {
                    "ca": str(copy / "ca" / "ca.crt"),
                    "cert": str(ident / f"witness-{DEMO_WITNESS}.crt"),
                    "key": str(ident / f"witness-{DEMO_WITNESS}.key"),
                },
            },
        }
        config.update(settings)
        path = home / "witness.toml"
        path.write_text(tomli_w.dumps(config))
        return path

    # processes -----------------------------------------------------------------------

    def start_broker(self) -> Mosquitto:
        conf = self.root / "broker" / "mosquitto.conf"
        self.mosquitto = Mosquitto(conf, self.broker_port, self.root / "broker").start()
        return self.mosquitto

    def start_influx(self) -> InfluxDB:
        self.influx = InfluxDB(self.root / "influx").start()
        self.influx.create_database(DATABASE)
        self.forwarder = V2WriteForwarder(self.influx.url).start()
        return self.influx

    def start_collector(self) -> CollectorProcess:
        config = self.collector_config()
        self.collector = CollectorProcess(config, self.root / "collector" / "collector.log")
        self.collector.start(timeout=30)
        return self.collector

    def start_witness(self, **settings: Any) -> WitnessProcess:
        config = self.witness_config(**settings)
        self.witness = WitnessProcess(config, config.parent / "witness.log")
        self.witness.start(timeout=30)
        return self.witness

    def start_agent(self, unit: UnitSpec, seconds: float = 0, online: bool = True) -> AgentProcess:
        assert unit.scenario is not None
        d = self.unit_dir(unit.device)
        agent = AgentProcess(d / "agent.toml", unit.scenario, d / "agent.log", seconds, online)
        self.agents[unit.device] = agent
        return agent.start(timeout=30)

    def start_servers(self) -> None:
        """The server side of a site, in the order the collector needs: the broker, InfluxDB,
        then the collector (configure_broker or provision first)."""
        self.start_broker()
        self.start_influx()
        self.start_collector()

    def start_all(self, seconds: float = 0) -> None:
        self.provision()
        if self.enrol:
            self.start_enrolment()
            self.enrol_units()
        self.start_servers()
        for unit in self.units:
            self.start_agent(unit, seconds)

    def stop_all(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        for part in (self.witness, self.collector, self.enrol_server, self.mosquitto, self.influx):
            if part is not None:
                part.stop()
        if self.forwarder is not None:
            self.forwarder.stop()

    # reading back --------------------------------------------------------------------

    def collector_cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """`jaga-collector <args> --config <this stack's collector.toml>`; exit status unchecked."""
        config = self.root / "collector" / "collector.toml"
        return jaga("jaga-collector", *args, "--config", config, check=False)

    def produced(self, device: str) -> int:
        """The unit's last seq, read from its outbox: what it has ever produced."""
        path = self.unit_dir(device) / "data" / "outbox.sqlite3"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        return int(row[0]) if row else 0

    def stored(self) -> dict[str, int]:
        """Distinct seqs stored in InfluxDB per unit."""
        assert self.influx is not None
        rows = self.influx.query(
            f'SELECT count(distinct("seq")) FROM "event" WHERE "site" = \'{self.site}\' '
            'GROUP BY "device"',
            db=DATABASE,
        )
        return {str(r["device"]): int(r["count"]) for r in rows}
