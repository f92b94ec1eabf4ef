"""Gather the broker's settings and identities from the registry and write its config folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from broker.home_assistant.topics import DEFAULT_PREFIX as HA_PREFIX
from broker.mosquitto import (
    DEFAULT_PERSISTENCE_DIR,
    DYNSEC_PLUGIN,
    CollectorIdentity,
    HomeAssistantIdentity,
    Identity,
    MosquittoSettings,
    OperatorIdentity,
    TlsFiles,
    UnitIdentity,
    WitnessIdentity,
    render_acl,
    render_config,
    render_dynsec,
)
from provisioning import certs
from provisioning.ca import CertificateAuthority, crl_paths
from provisioning.errors import ProvisioningError
from provisioning.files import PRIVATE_MODE, replace
from provisioning.registry import Registry

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CRL_WARNING = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """What the technician chose for the broker."""

    out_dir: Path | None = None
    install_dir: Path | None = None
    port: int = 8883
    bind: str = "0.0.0.0"
    persistence_dir: Path = DEFAULT_PERSISTENCE_DIR
    hosts: Sequence[str] = ()
    run_as_user: str | None = None
    renew_server_cert: bool = False
    dynsec_plugin: Path | None = None
    """Where the broker machine has mosquitto_dynamic_security.so; None: found on this machine."""


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """What broker-config wrote, and what it had to say about it."""

    out_dir: Path
    config: Path
    acl: Path
    dynsec: Path
    identities: tuple[Identity, ...]
    server_cert_made: bool
    warnings: tuple[str, ...]


def identities(registry: Registry) -> list[Identity]:
    """Everyone the broker lets in: units not revoked, then services.

    A unit without a certificate yet gets its ACL block too: it enrols with its one-time token
    whenever it is installed, long after this config was made, and must then be let publish
    (the block is harmless until then: only a certificate from the site CA gets in)."""
    found: list[Identity] = []
    for site, device in registry.devices():
        record = registry.device(site, device)
        if record.revoked_at is None:
            found.append(UnitIdentity(site, device))
    assistants = [
        HomeAssistantIdentity(
            n, registry.home_assistant_prefix(n), registry.home_assistant_sites(n)
        )
        for n in registry.identities("home-assistant")
    ]
    prefixes = tuple(sorted({a.prefix for a in assistants} | {HA_PREFIX}))
    found += [CollectorIdentity(n, prefixes) for n in registry.identities("collector")]
    found += [
        OperatorIdentity(n, registry.operator_sites(n)) for n in registry.identities("operator")
    ]
    found += [WitnessIdentity(n, registry.witness_sites(n)) for n in registry.identities("witness")]
    found += assistants
    return found


def dynsec_plugin() -> Path:
    """Debian's plugin under /usr/lib/<multiarch triplet>/: this machine's, else amd64's."""
    found = sorted(Path("/usr/lib").glob(f"*/{DYNSEC_PLUGIN}"))
    return found[0] if found else Path("/usr/lib/x86_64-linux-gnu") / DYNSEC_PLUGIN


def write_broker_config(registry: Registry, options: BrokerOptions) -> BrokerFiles:
    """Write mosquitto.conf, acl and copies of the TLS files into the output folder."""
    registry.ca_certificate()
    out = (options.out_dir or registry.broker_dir).resolve()
    install = options.install_dir or out
    if not install.is_absolute():
        raise ProvisioningError(f"--install-dir {install} must be an absolute path")
    wanted = list(dict.fromkeys([*(options.hosts or DEFAULT_HOSTS), *_site_hosts(registry)]))
    made = _ensure_server_cert(registry, wanted, renew=options.renew_server_cert)
    out.mkdir(parents=True, exist_ok=True)
    copies = {
        "ca.crt": registry.ca_cert_path,
        "server.crt": registry.broker_dir / "server.crt",
        "server.key": registry.broker_dir / "server.key",
    }
    for name, source in copies.items():
        target = out / name
        if source.resolve() != target.resolve():
            mode = PRIVATE_MODE if name.endswith(".key") else 0o644
            replace(target, source.read_bytes(), mode=mode)
    replace(out / "crl.pem", broker_crls(registry))
    try:
        settings = MosquittoSettings(
            tls=TlsFiles(
                cafile=install / "ca.crt",
                certfile=install / "server.crt",
                keyfile=install / "server.key",
                crlfile=install / "crl.pem",
            ),
            acl_file=install / "acl",
            dynsec_plugin=options.dynsec_plugin or dynsec_plugin(),
            dynsec_file=install / "dynsec.json",
            port=options.port,
            bind=options.bind,
            persistence_dir=options.persistence_dir,
            run_as_user=options.run_as_user,
        )
    except ValueError as exc:
        raise ProvisioningError(str(exc)) from None
    who = tuple(identities(registry))
    replace(out / "mosquitto.conf", render_config(settings).encode())
    replace(out / "acl", render_acl(who).encode())
    replace(out / "dynsec.json", render_dynsec(who).encode())
    warnings = _warnings(registry)
    for identity in who:
        if isinstance(identity, OperatorIdentity) and not identity.sites:
            warnings.append(
                f"operator {identity.name!r} names no site, so it may read and command none: "
                f"jaga-provision identity sites {identity.name} --site <site>"
            )
    return BrokerFiles(
        out, out / "mosquitto.conf", out / "acl", out / "dynsec.json", who, made, tuple(warnings)
    )


def broker_crls(registry: Registry) -> bytes:
    """The broker's crlfile: the root's CRL, then the CRL of every unrevoked issuing CA.

    Mosquitto 2.0.11 checks only the leaf against a CRL (X509_V_FLAG_CRL_CHECK) and refuses a
    client whose issuer has no CRL in the file (measured, see /work/coord/CA_API.md): leaving a
    revoked issuing CA's CRL out is what refuses every unit it signed."""
    parts = [path.read_bytes() for path in crl_paths(registry)]
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)


def _site_hosts(registry: Registry) -> list[str]:
    return [site.broker_host for site in registry.sites()]


def _ensure_server_cert(registry: Registry, hosts: list[str], *, renew: bool) -> bool:
    """Make broker/server.crt when absent (or asked); refuse one that misses a needed host."""
    path = registry.broker_dir / "server.crt"
    key = registry.broker_dir / "server.key"
    if path.exists() and key.exists() and not renew:
        existing = x509.load_pem_x509_certificate(path.read_bytes())
        missing = [h for h in hosts if h not in certs.san_hosts(existing)]
        if missing:
            raise ProvisioningError(
                f"{path} does not name {', '.join(missing)} (units would refuse the broker); "
                "run again with --renew-server-cert to make a new one"
            )
        return False
    CertificateAuthority(registry).issue_server(hosts)
    return True


def _warnings(registry: Registry) -> list[str]:
    log = registry.ca_log()
    notes = []
    if log.crl_next_update is not None:
        left = log.crl_next_update - datetime.now(UTC)
        if left < CRL_WARNING:
            notes.append(
                f"the CRL expires on {log.crl_next_update:%Y-%m-%d}: after that the broker "
                "refuses every client; run `jaga-provision crl refresh` now"
            )
    return notes
