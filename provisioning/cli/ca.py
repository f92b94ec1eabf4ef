"""`jaga-provision ca ...` and `crl ...`: the site CA and its revocation list."""

from __future__ import annotations

from typing import Annotated

import typer

from provisioning.ca import (
    DEFAULT_CA_DAYS,
    DEFAULT_CRL_DAYS,
    CertificateAuthority,
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
    path = CertificateAuthority(registry).refresh_crl(days=days)
    log = registry.ca_log()
    say(f"wrote {path} (CRL number {log.crl_number}, valid until {log.crl_next_update:%Y-%m-%d})")
    say("next: jaga-provision broker-config, then systemctl reload mosquitto")
