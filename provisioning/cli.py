"""`jaga-provision`: what a technician types to run the site CA, register units and ship them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from kernel.config import ConfigError
from protocol.ids import InvalidIdentifier
from provisioning.broker_config import BrokerOptions, write_broker_config
from provisioning.bundle import write_bundle
from provisioning.ca import (
    DEFAULT_CA_DAYS,
    DEFAULT_CERT_DAYS,
    DEFAULT_CRL_DAYS,
    CertificateAuthority,
    RevokeReason,
    fingerprint,
)
from provisioning.enrolment import csr_path_hint, issue_with_new_key, sign_csr
from provisioning.errors import ProvisioningError
from provisioning.identities import operator_sites, revoke_identity
from provisioning.register import add_device, add_site
from provisioning.registry import Registry
from provisioning.wiring import parse_wiring

P = ParamSpec("P")
T = TypeVar("T")

app = typer.Typer(
    name="jaga-provision",
    help=(
        "Run the site certificate authority and the registry of Jaga units.\n\n"
        "The provisioning folder (--dir, or JAGA_PROVISION_DIR, default ./jaga-provision) is "
        "the registry: one readable file per site and unit. Keep it in version control; the "
        "*.key files stay out (ca init writes a .gitignore).\n\n"
        "Typical order: ca init -> site add -> device add -> bundle -> (on the unit) "
        "jaga-agent enroll -> device sign -> identity add collector/operator -> broker-config."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
ca_app = typer.Typer(help="The site certificate authority (CA) every unit trusts.")
site_app = typer.Typer(help="Warehouse sites and the broker their units dial.")
device_app = typer.Typer(help="Units: register, certify, revoke.")
identity_app = typer.Typer(help="Certificates for the collector and control-room operators.")
crl_app = typer.Typer(help="The certificate revocation list the broker checks.")
app.add_typer(ca_app, name="ca", no_args_is_help=True)
app.add_typer(site_app, name="site", no_args_is_help=True)
app.add_typer(device_app, name="device", no_args_is_help=True)
app.add_typer(identity_app, name="identity", no_args_is_help=True)
app.add_typer(crl_app, name="crl", no_args_is_help=True)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Provisioning folder (the registry); default: the --dir given before the "
        "command, $JAGA_PROVISION_DIR, or ./jaga-provision.",
        show_default=False,
    ),
]
DEFAULT_DIR = Path("jaga-provision")


class Role(StrEnum):
    collector = "collector"
    operator = "operator"


class PinFactory(StrEnum):
    lgpio = "lgpio"
    rpigpio = "rpigpio"
    pigpio = "pigpio"
    native = "native"
    mock = "mock"


def reports_mistakes(func: Callable[P, T]) -> Callable[P, T]:
    """Turn a technician's mistake into one line on stderr and exit status 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except (ProvisioningError, InvalidIdentifier, ConfigError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def root(
    ctx: typer.Context,
    dir: Annotated[
        Path,
        typer.Option(
            "--dir",
            envvar="JAGA_PROVISION_DIR",
            help="Provisioning folder (the registry). Also accepted after the command.",
        ),
    ] = DEFAULT_DIR,
) -> None:
    """Run the site certificate authority and the registry of Jaga units."""
    ctx.obj = dir


def open_registry(ctx: typer.Context, dir: Path | None) -> Registry:
    """The registry named after the command, else before it, else by env or default."""
    chosen = dir or ctx.obj
    return Registry(chosen if isinstance(chosen, Path) else DEFAULT_DIR)


def existing_registry(ctx: typer.Context, dir: Path | None) -> Registry:
    """A registry that must already exist (listing commands): say so when it does not."""
    registry = open_registry(ctx, dir)
    if not registry.ca_cert_path.is_file():
        raise ProvisioningError(
            f"no registry in {registry.root}: start one with `jaga-provision ca init`, or "
            "point --dir (or JAGA_PROVISION_DIR) at the provisioning folder"
        )
    return registry


def say(message: str) -> None:
    typer.echo(message)


@ca_app.command("init")
@reports_mistakes
def ca_init(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Option(help="Name in the CA certificate, e.g. 'Jaga CA Jawa Barat'.")
    ] = "Jaga CA",
    days: Annotated[int, typer.Option(help="How long the CA is valid.")] = DEFAULT_CA_DAYS,
    dir: DirOption = None,
) -> None:
    """Create the CA key (ca/ca.key, mode 0600) and certificate, an empty CRL and a .gitignore."""
    registry = open_registry(ctx, dir)
    CertificateAuthority.init(registry, name, days=days)
    say(f"CA {name!r} created in {registry.ca_dir}")
    say(f"  certificate: {registry.ca_cert_path}")
    say(f"  fingerprint: {fingerprint(registry.ca_certificate())} (SHA-256; {PUBLISH})")
    say(f"  key:         {registry.ca_key_path} (keep it secret; never copy it to a unit)")
    say(f"  CRL:         {registry.crl_path} (valid {DEFAULT_CRL_DAYS} days; `crl refresh` renews)")
    say("next: jaga-provision site add <site> --name ... --timezone Asia/Jakarta --broker-host ...")


PUBLISH = (
    "publish it now, e.g. to the election commission and Bawaslu: auditors check exports "
    "against it with `jaga-collector audit verify-export --ca-fingerprint`"
)


@ca_app.command("fingerprint")
@reports_mistakes
def ca_fingerprint(ctx: typer.Context, dir: DirOption = None) -> None:
    """Print the site CA's SHA-256 fingerprint (64 hex digits), the trust anchor auditors pin."""
    say(fingerprint(existing_registry(ctx, dir).ca_certificate()))


@site_app.command("add")
@reports_mistakes
def site_add(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Site id: lowercase letters, digits, '-'.")],
    name: Annotated[str, typer.Option(help="Human name, e.g. 'Gudang KPU Bandung'.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Asia/Jakarta.")],
    broker_host: Annotated[
        str, typer.Option(help="Host name or address the site's units dial for the broker.")
    ],
    broker_port: Annotated[int, typer.Option(help="Broker TLS port.")] = 8883,
    dir: DirOption = None,
) -> None:
    """Register a warehouse site (writes sites/<site>.toml)."""
    path = add_site(
        open_registry(ctx, dir),
        site,
        name=name,
        timezone=timezone,
        broker_host=broker_host,
        broker_port=broker_port,
    )
    say(f"site {site!r} written to {path}")
    say(f"next: jaga-provision device add {site} <device> --door 17:pintu-utama ...")


@site_app.command("list")
@reports_mistakes
def site_list(ctx: typer.Context, dir: DirOption = None) -> None:
    """Show the registered sites."""
    for record in existing_registry(ctx, dir).sites():
        say(
            f"{record.id}\t{record.name}\t{record.timezone}\t{record.broker_host}:{record.broker_port}"
        )


@device_app.command("add")
@reports_mistakes
def device_add(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Site id (must be added first).")],
    device: Annotated[str, typer.Argument(help="Unit id, unique across all sites.")],
    door: Annotated[
        list[str] | None,
        typer.Option(
            metavar="PIN:NAME",
            help="Door reed switch (BCM pin number), e.g. 17:pintu-utama. Repeat for more.",
        ),
    ] = None,
    pir: Annotated[
        list[str] | None,
        typer.Option(metavar="PIN:NAME", help="PIR motion sensor, e.g. 27:lorong."),
    ] = None,
    tamper: Annotated[
        list[str] | None,
        typer.Option(
            metavar="PIN[:NAME]", help="Enclosure tamper switch; the name defaults to tamper."
        ),
    ] = None,
    button: Annotated[
        list[str] | None,
        typer.Option(metavar="PIN:NAME", help="Patrol check-in button, e.g. 5:patroli."),
    ] = None,
    camera: Annotated[bool, typer.Option(help="The unit has a camera.")] = False,
    pin_factory: Annotated[
        PinFactory, typer.Option(help="GPIO library on the unit (lgpio on a Pi 5).")
    ] = PinFactory.lgpio,
    generate_key: Annotated[
        bool,
        typer.Option(
            help="Bench shortcut: make the unit's key here and issue its certificate now. "
            "Without it the key is made on the unit by `jaga-agent enroll`."
        ),
    ] = False,
    days: Annotated[
        int, typer.Option(help="Certificate validity with --generate-key.")
    ] = DEFAULT_CERT_DAYS,
    dir: DirOption = None,
) -> None:
    """Register a unit and its wiring; writes device.toml and the unit's agent.toml."""
    registry = open_registry(ctx, dir)
    sensors = parse_wiring(
        doors=door or (), pirs=pir or (), tampers=tamper or (), buttons=button or ()
    )
    added = add_device(
        registry, site, device, sensors, camera=camera, pin_factory=pin_factory.value
    )
    say(f"unit {device!r} registered in site {site!r}:")
    for sensor in added.config.sensors:
        say(f"  pin {sensor.pin:>2}  {sensor.kind:<7} {sensor.name}")
    if camera:
        say("  camera")
    say(f"wrote {added.device_toml}")
    say(f"wrote {added.agent_toml}")
    if generate_key:
        issued = issue_with_new_key(registry, site, device, days=days)
        say(f"wrote {issued.key_path} (made here: keep it secret) and {issued.cert_path}")
        say(f"next: jaga-provision bundle {site} {device}")
    else:
        say(
            f"next: jaga-provision bundle {site} {device}, copy it to the unit, run "
            "`jaga-agent enroll` there, then `jaga-provision device sign <device>.csr`"
        )


@device_app.command("sign")
@reports_mistakes
def device_sign(
    ctx: typer.Context,
    csr: Annotated[Path, typer.Argument(help="The <device>.csr written by `jaga-agent enroll`.")],
    days: Annotated[
        int, typer.Option(help="How long the certificate is valid.")
    ] = DEFAULT_CERT_DAYS,
    dir: DirOption = None,
) -> None:
    """Check a unit's certificate request against the registry and issue its certificate."""
    if not csr.is_file():
        raise ProvisioningError(csr_path_hint(csr))
    issued = sign_csr(open_registry(ctx, dir), csr.read_bytes(), days=days)
    cert = issued.cert
    say(f"issued certificate serial {cert.serial_number} for {cert.subject.rfc4514_string()}")
    say(f"  valid until {cert.not_valid_after_utc:%Y-%m-%d}")
    say(f"wrote {issued.cert_path}")
    say("next: copy device.crt beside agent.toml on the unit (or make a new bundle)")


@device_app.command("issue")
@reports_mistakes
def device_issue(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Site id.")],
    device: Annotated[str, typer.Argument(help="Unit id.")],
    generate_key: Annotated[
        bool, typer.Option(help="Required: confirms the unit's key is made here (bench setups).")
    ] = False,
    days: Annotated[
        int, typer.Option(help="How long the certificate is valid.")
    ] = DEFAULT_CERT_DAYS,
    dir: DirOption = None,
) -> None:
    """Bench shortcut: make a registered unit's key here and issue its certificate."""
    if not generate_key:
        raise ProvisioningError(
            "device issue makes the unit's private key on this machine: pass --generate-key to "
            "confirm, or enrol the unit with `jaga-agent enroll` + `jaga-provision device sign`"
        )
    issued = issue_with_new_key(open_registry(ctx, dir), site, device, days=days)
    say(f"wrote {issued.key_path} (made here: keep it secret)")
    say(f"wrote {issued.cert_path} (serial {issued.cert.serial_number})")
    say(f"next: jaga-provision bundle {site} {device}")


@device_app.command("revoke")
@reports_mistakes
def device_revoke(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Site id.")],
    device: Annotated[str, typer.Argument(help="Unit id.")],
    reason: Annotated[
        RevokeReason, typer.Option(help="Why: written into the CRL.")
    ] = RevokeReason.UNSPECIFIED,
    dir: DirOption = None,
) -> None:
    """Revoke every certificate of a unit and rewrite ca/crl.pem; the broker must reload."""
    registry = open_registry(ctx, dir)
    serials = CertificateAuthority(registry).revoke_device(site, device, reason)
    listed = ", ".join(str(s) for s in serials) or "none (no certificate had been issued)"
    say(f"revoked {device!r} in site {site!r}: serial(s) {listed}")
    say(f"wrote {registry.crl_path}")
    say(
        "next: jaga-provision broker-config (copies the CRL, drops the unit from the ACL), then "
        "reload the broker: systemctl reload mosquitto (SIGHUP). Until then it still lets it in."
    )


@device_app.command("list")
@reports_mistakes
def device_list(ctx: typer.Context, dir: DirOption = None) -> None:
    """Show every unit with its certificate state."""
    registry = existing_registry(ctx, dir)
    for site, device in registry.devices():
        record = registry.device(site, device)
        cert = registry.device_certificate(site, device)
        if record.revoked_at is not None:
            state = f"revoked {record.revoked_at:%Y-%m-%d}"
        elif cert is None:
            state = "no certificate yet"
        else:
            state = f"serial {cert.serial_number}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
        say(f"{site}\t{device}\t{state}")


@identity_app.command("add")
@reports_mistakes
def identity_add(
    ctx: typer.Context,
    role: Annotated[Role, typer.Argument(help="collector or operator.")],
    name: Annotated[str, typer.Argument(help="Name, e.g. main or budi (letters, digits, '-').")],
    site: Annotated[
        list[str] | None,
        typer.Option(help="Operator: a site they may read and command. Repeat for more."),
    ] = None,
    all_sites: Annotated[
        bool, typer.Option(help="Operator: every site (a central control room).")
    ] = False,
    days: Annotated[
        int, typer.Option(help="How long the certificate is valid.")
    ] = DEFAULT_CERT_DAYS,
    dir: DirOption = None,
) -> None:
    """Make a key and certificate for a collector or a control-room operator (and its sites)."""
    registry = open_registry(ctx, dir)
    registry.identity_path(role.value, name, ".crt")  # a bad name is the first thing to say
    sites: list[str] = []
    if role is Role.operator:
        sites = operator_sites(registry, site or [], every_site=all_sites)
    elif site or all_sites:
        raise ProvisioningError(
            "--site and --all-sites are for operators; a collector takes "
            "its sites from collector.toml (mqtt.sites)"
        )
    issued = CertificateAuthority(registry).issue_service(role.value, name, days=days)
    say(f"{role.value} {name!r}: certificate CN {role.value}:{name}")
    say(f"wrote {issued.cert_path}")
    say(f"wrote {issued.key_path} (mode 0600)")
    if role is Role.operator:
        path = registry.save_operator_sites(name, sites)
        say(f"wrote {path} (sites: {', '.join(sites)})")
    say(
        "next: jaga-provision broker-config, so the broker's ACL knows it; then restart the "
        "broker (systemctl restart mosquitto: a reload does not re-read dynsec.json)"
    )


@identity_app.command("sites")
@reports_mistakes
def identity_sites(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The operator's name.")],
    site: Annotated[
        list[str] | None, typer.Option(help="A site they may read and command. Repeat for more.")
    ] = None,
    all_sites: Annotated[bool, typer.Option(help="Every site.")] = False,
    dir: DirOption = None,
) -> None:
    """Set the sites an operator may read and command (replaces the list)."""
    registry = open_registry(ctx, dir)
    if registry.identity_certificate("operator", name) is None:
        raise ProvisioningError(
            f"no operator {name!r}: make one with `jaga-provision identity add operator {name}`"
        )
    path = registry.save_operator_sites(
        name, operator_sites(registry, site or [], every_site=all_sites)
    )
    say(f"wrote {path}")
    say("next: jaga-provision broker-config, then reload the broker (systemctl reload mosquitto)")


@identity_app.command("revoke")
@reports_mistakes
def identity_revoke(
    ctx: typer.Context,
    role: Annotated[Role, typer.Argument(help="collector or operator.")],
    name: Annotated[str, typer.Argument(help="The identity's name, e.g. budi.")],
    reason: Annotated[
        RevokeReason, typer.Option(help="Why: written into the CRL.")
    ] = RevokeReason.UNSPECIFIED,
    dir: DirOption = None,
) -> None:
    """Revoke a collector or operator: its certificate goes into the CRL, the broker refuses it."""
    registry = open_registry(ctx, dir)
    serials, folder = revoke_identity(registry, role.value, name, reason)
    listed = ", ".join(str(s) for s in serials) or "none logged"
    say(f"revoked {role.value} {name!r}: serial(s) {listed}")
    say(f"wrote {registry.crl_path}; its files moved to {folder}")
    say(
        "next: jaga-provision broker-config (copies the CRL, drops it from the ACL), then reload "
        "the broker: systemctl reload mosquitto (SIGHUP). Until then it still gets in."
    )


@crl_app.command("refresh")
@reports_mistakes
def crl_refresh(
    ctx: typer.Context,
    days: Annotated[
        int, typer.Option(help="Days until the next refresh is due.")
    ] = DEFAULT_CRL_DAYS,
    dir: DirOption = None,
) -> None:
    """Re-sign the CRL with a new expiry. An expired CRL makes the broker refuse every client."""
    registry = open_registry(ctx, dir)
    path = CertificateAuthority(registry).refresh_crl(days=days)
    log = registry.ca_log()
    say(f"wrote {path} (CRL number {log.crl_number}, valid until {log.crl_next_update:%Y-%m-%d})")
    say("next: jaga-provision broker-config, then systemctl reload mosquitto")


@app.command("bundle")
@reports_mistakes
def bundle(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Site id.")],
    device: Annotated[str, typer.Argument(help="Unit id.")],
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Archive to write (default ./jaga-<site>-<device>.tar.gz)."
        ),
    ] = None,
    dir: DirOption = None,
) -> None:
    """Pack agent.toml, ca.crt, the unit's certificate (key if made here) and the systemd unit."""
    target = out or Path(f"jaga-{site}-{device}.tar.gz")
    made = write_bundle(open_registry(ctx, dir), site, device, target)
    say(f"wrote {made.path}: {', '.join(made.members)}")
    say(
        f"on the unit, beside a copy of this checkout: sudo jaga/scripts/install-agent.sh "
        f"{made.path.name}"
    )
    if not made.has_certificate:
        say(
            "no certificate yet: that first run makes the key on the unit and leaves "
            f"/etc/jaga/{device}.csr; bring it back, run `jaga-provision device sign "
            f"{device}.csr`, make this bundle again and run the script again with it"
        )
    elif made.has_key:
        say("the archive holds the unit's private key: delete it once copied")


@app.command("broker-config")
@reports_mistakes
def broker_config(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Folder to write into (default <registry>/broker)."),
    ] = None,
    install_dir: Annotated[
        Path | None,
        typer.Option(
            help="Absolute folder these files will live in on the broker machine "
            "(default: the --out folder)."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="TLS listener port.")] = 8883,
    bind: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    persistence_dir: Annotated[
        Path, typer.Option(help="Where Mosquitto keeps its queues across restarts.")
    ] = Path("/var/lib/mosquitto/"),
    host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST",
            help="Name or address units use for the broker; repeat. Default: localhost, "
            "127.0.0.1; every site's broker host is added.",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="Mosquitto's `user`: who it becomes when started as root (default: mosquitto)."
        ),
    ] = None,
    renew_server_cert: Annotated[
        bool, typer.Option(help="Make a new broker server certificate even if one exists.")
    ] = False,
    dynsec_plugin: Annotated[
        Path | None,
        typer.Option(
            help="mosquitto_dynamic_security.so on the broker machine (default: found under "
            "/usr/lib/*/ here, else Debian amd64's path)."
        ),
    ] = None,
    dir: DirOption = None,
) -> None:
    """Write mosquitto.conf, the ACL, dynsec.json and the TLS files they need, from the registry."""
    files = write_broker_config(
        open_registry(ctx, dir),
        BrokerOptions(
            out_dir=out,
            install_dir=install_dir,
            port=port,
            bind=bind,
            persistence_dir=persistence_dir,
            hosts=tuple(host or ()),
            run_as_user=user,
            renew_server_cert=renew_server_cert,
            dynsec_plugin=dynsec_plugin,
        ),
    )
    if files.server_cert_made:
        say("made the broker server certificate (broker/server.crt)")
    say(f"wrote {files.config}")
    say(f"wrote {files.acl} ({len(files.identities)} identities)")
    say(f"wrote {files.dynsec} (no $share/ subscriptions for units and operators)")
    say(f"wrote ca.crt, crl.pem, server.crt, server.key in {files.out_dir}")
    for warning in files.warnings:
        say(f"warning: {warning}")
    say(
        "next: Mosquitto reads these as user mosquitto: chown -R mosquitto: the folder on the "
        "broker machine; start with mosquitto -c mosquitto.conf, or reload it (SIGHUP); restart "
        "it instead when a unit or an operator was added (dynsec.json is read only at start)"
    )


def main() -> None:
    """Console entry point."""
    app()
