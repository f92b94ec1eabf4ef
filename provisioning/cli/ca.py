"""`jaga-provision ca ...` and `crl ...`: the site CA and its revocation list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from provisioning.ca import (
    DEFAULT_CA_DAYS,
    DEFAULT_CRL_DAYS,
    DEFAULT_ISSUING_DAYS,
    CertificateAuthority,
    RevokeReason,
    crl_paths,
    fingerprint,
)
from provisioning.cli.shared import (
    DirOption,
    existing_registry,
    open_registry,
    reports_mistakes,
    say,
)

ca_app = typer.Typer(help="The site certificate authority (CA) every unit trusts.")
crl_app = typer.Typer(help="The certificate revocation list the broker checks.")
issuing_app = typer.Typer(
    help="The issuing CA: signed by the root (which stays on this laptop), it lives on the "
    "server and signs unit certificates (token enrolment and renewal)."
)


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
    written = CertificateAuthority(registry).refresh_crl(days=days)
    log = registry.ca_log()
    for path in written:
        until = datetime.now(UTC) + timedelta(days=days)
        say(f"wrote {path} (CRL number up to {log.crl_number}, valid until {until:%Y-%m-%d})")
    for path in set(crl_paths(registry)) - set(written):
        say(f"kept {path}: its CA's key is not on this machine (refresh it where the key is)")
    say("next: jaga-provision broker-config, then systemctl reload mosquitto")


@issuing_app.command("create")
@reports_mistakes
def issuing_create(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="How long it is valid.")] = DEFAULT_ISSUING_DAYS,
    dir: DirOption = None,
) -> None:
    """Make the issuing CA (ca/issuing/<n>/, path length 0) from the root, with its empty CRL."""
    registry = open_registry(ctx, dir)
    issued = CertificateAuthority(registry).create_issuing(days=days)
    say(f"issuing CA {issued.cert.subject.rfc4514_string()!r} created: {issued.cert_path}")
    say(f"  valid until {issued.cert.not_valid_after_utc:%Y-%m-%d}")
    say(f"  key: {issued.key_path} (mode 0600): it goes to the server with the registry copy")
    say("next: jaga-provision broker-config (the broker's CRL file now holds both CRLs)")


@issuing_app.command("renew")
@reports_mistakes
def issuing_renew(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="How long it is valid.")] = DEFAULT_ISSUING_DAYS,
    dir: DirOption = None,
) -> None:
    """A new certificate from the root for the same issuing CA key: units need nothing."""
    registry = open_registry(ctx, dir)
    issued = CertificateAuthority(registry).renew_issuing(days=days)
    say(f"issuing CA renewed: serial {issued.cert.serial_number}, valid until "
        f"{issued.cert.not_valid_after_utc:%Y-%m-%d}")  # fmt: skip
    say("next: copy ca/issuing/ to the server; units get the new certificate at their renewal")


@issuing_app.command("revoke")
@reports_mistakes
def issuing_revoke(
    ctx: typer.Context,
    reason: Annotated[
        RevokeReason, typer.Option(help="Why (written into the root's CRL).")
    ] = RevokeReason.KEY_COMPROMISE,
    dir: DirOption = None,
) -> None:
    """Revoke the issuing CA (its key is stolen): every unit it signed is refused by the broker
    after broker-config and can no longer renew; they re-enrol with tokens."""
    registry = open_registry(ctx, dir)
    generation = CertificateAuthority(registry).revoke_issuing(reason)
    say(f"issuing CA {generation} revoked; wrote {registry.crl_path}")
    say(
        "next: jaga-provision issuing-ca create, broker-config and reload the broker; then a "
        "token for every unit (jaga-provision device token) to enrol again"
    )
