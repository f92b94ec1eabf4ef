"""`jaga-provision device ...` and `bundle`: units, their certificates, what is copied to them."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from provisioning.bundle import Bundle, write_bundle
from provisioning.ca import DEFAULT_CERT_DAYS, CertificateAuthority, RevokeReason, crl_paths
from provisioning.cli.shared import (
    DirOption,
    existing_registry,
    open_registry,
    reports_mistakes,
    say,
)
from provisioning.enrolment import csr_path_hint, issue_with_new_key, sign_csr
from provisioning.errors import ProvisioningError
from provisioning.lifecycle import by_unit, describe, read_log
from provisioning.register import add_device
from provisioning.wiring import parse_wiring

device_app = typer.Typer(help="Units: register, certify, revoke.")


class PinFactory(StrEnum):
    lgpio = "lgpio"
    rpigpio = "rpigpio"
    pigpio = "pigpio"
    native = "native"
    mock = "mock"


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
    bundle_out: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            metavar="FILE",
            help="Also write the unit's bundle for the SD card now; without --generate-key it "
            "carries a one-time enrolment token (24 h), so one install on the unit enrols it.",
        ),
    ] = None,
    dir: DirOption = None,
) -> None:
    """Register a unit and its wiring; writes device.toml and the unit's agent.toml."""
    registry = open_registry(ctx, dir)
    if bundle_out is not None and bundle_out.exists():
        raise ProvisioningError(
            f"{bundle_out} already exists; remove it or choose another --bundle"
        )
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
    if bundle_out is not None:
        _said_bundle(write_bundle(registry, site, device, bundle_out), site, device)
    elif generate_key:
        say(f"next: jaga-provision bundle {site} {device}")
    else:
        say(
            f"next: jaga-provision bundle {site} {device} (it carries a one-time enrolment "
            "token), copy it to the unit and install it there: the unit enrols itself"
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
    for path in crl_paths(registry):
        say(f"wrote {path}")
    say(
        "next: jaga-provision broker-config (copies the CRL, drops the unit from the ACL), then "
        "reload the broker: systemctl reload mosquitto (SIGHUP). Until then it still lets it in."
    )


@device_app.command("list")
@reports_mistakes
def device_list(
    ctx: typer.Context,
    history: Annotated[
        bool,
        typer.Option(
            help="Under each unit, every record of its lifecycle (tokens, enrolment, renewals, "
            "revocation, refusals): when, what, by whom."
        ),
    ] = False,
    dir: DirOption = None,
) -> None:
    """Show every unit with its certificate state and the last record of its lifecycle."""
    registry = existing_registry(ctx, dir)
    records = by_unit(read_log(registry.root))
    for site, device in registry.devices():
        record = registry.device(site, device)
        cert = registry.device_certificate(site, device)
        if record.revoked_at is not None:
            by = f" by {record.revoked_by}" if record.revoked_by else ""
            state = f"revoked {record.revoked_at:%Y-%m-%d}{by}"
        elif cert is None:
            state = "no certificate yet"
        else:
            state = f"serial {cert.serial_number}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
        mine = records.get((site, device), [])
        last = f"\tlast: {describe(mine[-1])}" if mine else ""
        say(f"{site}\t{device}\t{state}{last}")
        if history:
            for item in mine:
                say(f"    {describe(item)}")


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
    token: Annotated[
        bool,
        typer.Option(
            help="For a unit without certificate: carry a new one-time enrolment token (the "
            "unit enrols itself at install). --no-token: the unit writes a CSR to sign here.",
        ),
    ] = True,
    dir: DirOption = None,
) -> None:
    """Pack agent.toml, ca.crt, the unit's certificate (key if made here) or a one-time
    enrolment token, and the systemd unit."""
    target = out or Path(f"jaga-{site}-{device}.tar.gz")
    made = write_bundle(open_registry(ctx, dir), site, device, target, token=token)
    _said_bundle(made, site, device)


def _said_bundle(made: Bundle, site: str, device: str) -> None:
    say(f"wrote {made.path}: {', '.join(made.members)}")
    say(
        f"on the unit, beside a copy of this checkout: sudo jaga/scripts/install-agent.sh "
        f"{made.path.name}"
    )
    if made.token_expires_at is not None:
        until = f"{made.token_expires_at:%Y-%m-%d %H:%M} UTC"
        say(
            f"it carries a one-time enrolment token, valid until {until}: the install makes "
            "the key on the unit and has the server's enrolment "
            "endpoint certify it (the server's registry copy must be updated first). The archive "
            "holds the token: delete it once installed"
        )
    elif not made.has_certificate:
        say(
            "no certificate yet: that first run makes the key on the unit and leaves "
            f"/etc/jaga/{device}.csr; bring it back, run `jaga-provision device sign "
            f"{device}.csr`, make this bundle again and run the script again with it"
        )
    elif made.has_key:
        say("the archive holds the unit's private key: delete it once copied")
