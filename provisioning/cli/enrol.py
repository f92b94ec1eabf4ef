"""`jaga-provision device token` and `enrol-server`: one-time tokens and the enrolment endpoint."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Annotated

import typer

from provisioning.ca import DEFAULT_CERT_DAYS
from provisioning.cli.shared import DirOption, existing_registry, reports_mistakes, say
from provisioning.errors import ProvisioningError
from provisioning.est import DEFAULT_GRACE_DAYS
from provisioning.est_server import DEFAULT_PORT, serve
from provisioning.tokens import issue_token


@reports_mistakes
def device_token(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Site id.")],
    device: Annotated[str, typer.Argument(help="Unit id.")],
    hours: Annotated[int, typer.Option(help="How long the token lives (1 to 24 hours).")] = 24,
    dir: DirOption = None,
) -> None:
    """Give a unit a one-time enrolment token (only its hash is kept; a new one replaces it)."""
    registry = existing_registry(ctx, dir)
    issued = issue_token(registry, site, device, ttl=timedelta(hours=hours))
    say(issued.token)
    typer.echo(f"valid once, until {issued.expires_at:%Y-%m-%d %H:%M} UTC", err=True)
    typer.echo(f"on the unit: jaga-agent enroll --token {issued.token}", err=True)


@reports_mistakes
def enrol_server(
    ctx: typer.Context,
    listen: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="HTTPS port units dial.")] = DEFAULT_PORT,
    days: Annotated[
        int, typer.Option(help="Validity of the certificates it issues.")
    ] = DEFAULT_CERT_DAYS,
    grace_days: Annotated[
        int,
        typer.Option(
            help="A unit whose newest certificate expired (an outage) may renew this long after."
        ),
    ] = DEFAULT_GRACE_DAYS,
    dir: DirOption = None,
) -> None:
    """Serve EST enrolment (one-time tokens) and renewal (current certificate) over HTTPS."""
    registry = existing_registry(ctx, dir)
    if grace_days < 0:
        raise ProvisioningError(f"--grace-days must be 0 or more, not {grace_days}")
    typer.echo(f"enrolment endpoint on https://{listen}:{port}/.well-known/est/<site>/", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve(registry, listen, port, days, grace_days)
