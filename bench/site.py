"""A bench site on loopback: devstack's Stack (jaga-provision, Mosquitto with the generated
mutual-TLS config and ACL, InfluxDB 1.6 + forwarder) plus what benchmarks need on top —
hundreds of enrolled units, several collectors with tuned configs, identities to connect as.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from bench.alerts import alerts_section
from bench.provision import enrol_units
from devstack.stack import DATABASE, CollectorProcess, Stack, UnitSpec


@dataclass(frozen=True, slots=True)
class Identity:
    """The TLS files one MQTT client connects with."""

    name: str
    ca: Path
    cert: Path
    key: Path


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """base with over's keys laid on top, tables merged key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class BenchSite:
    """One site's servers under `root`; units with an agent.toml are `agent_units`."""

    def __init__(
        self,
        root: Path,
        *,
        site: str = "bench",
        agent_units: tuple[UnitSpec, ...] = (),
        heartbeat_s: int = 10,
        armed: bool = False,
    ) -> None:
        """armed: the collector arms the site around the clock (forced-door alerts); otherwise
        it runs with the alert engine's defaults (no schedule: disarmed until armed by hand)."""
        self.root = root
        self.armed = armed
        self.stack = Stack(root, units=agent_units, site=site, heartbeat_s=heartbeat_s)
        self.collectors: dict[str, CollectorProcess] = {}

    @property
    def site(self) -> str:
        return self.stack.site

    @property
    def registry(self) -> Path:
        return self.stack.registry

    @property
    def port(self) -> int:
        return self.stack.broker_port

    # provisioning --------------------------------------------------------------------------

    def provision(self, bulk_units: Sequence[str] = ()) -> None:
        """CA, site, agent units and identities with jaga-provision; bulk units through the API;
        then the broker config from the registry."""
        self.stack.provision_registry()
        if bulk_units:
            enrol_units(self.registry, self.site, bulk_units)
        self.stack.configure_broker()

    @property
    def operator(self) -> Identity:
        """The control-room identity `operator:demo` (may read jaga/v1/#)."""
        ident = self.registry / "identities"
        return Identity(
            "operator:demo",
            self.registry / "ca" / "ca.crt",
            ident / "operator-demo.crt",
            ident / "operator-demo.key",
        )

    def unit(self, device: str) -> Identity:
        """A unit's own certificate and key, as enrolled."""
        folder = self.registry / "devices" / self.site / device
        return Identity(
            device, self.registry / "ca" / "ca.crt", folder / "device.crt", folder / "device.key"
        )

    # servers ---------------------------------------------------------------------------------

    def start_servers(self) -> None:
        self.stack.start_broker()
        self.stack.start_influx()

    def collector_config(self, name: str, overrides: dict[str, Any] | None = None) -> Path:
        """collector-<name>/collector.toml: the devstack config, own data_dir and client id."""
        self.stack.collector_identity(name)  # one certificate per collector: one connection each
        base_path = self.stack.collector_config(client_id=f"jaga-collector-{name}", identity=name)
        config = tomllib.loads(base_path.read_text())
        folder = self.root / f"collector-{name}"
        config["data_dir"] = str(folder / "data")
        alerts = alerts_section(self.site, heartbeat_s=self.stack.heartbeat_s)
        if alerts is not None and self.armed:
            config["alerts"] = alerts
        config = merge(config, overrides or {})
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "collector.toml"
        path.write_text(tomli_w.dumps(config))
        return path

    def start_collector(
        self, name: str = "1", overrides: dict[str, Any] | None = None, timeout: float = 30
    ) -> CollectorProcess:
        """`jaga-collector run` with this site's config; ready once subscribed."""
        config = self.collector_config(name, overrides)
        proc = CollectorProcess(config, config.parent / "collector.log")
        proc.name = f"collector-{name}"
        self.collectors[name] = proc
        return proc.start(timeout=timeout)

    def query(self, q: str) -> list[dict[str, Any]]:
        assert self.stack.influx is not None
        return self.stack.influx.query(q, db=DATABASE)

    def stop(self) -> None:
        for proc in self.collectors.values():
            proc.stop()
        self.stack.stop_all()
