"""`jaga-provision`: what a technician types to run the site CA, register units and ship them.

One module per command group: ca (and crl), sites, devices (and bundle), identities, broker
(broker-config); shared holds the --dir option and the registry it opens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioning.cli import broker, ca, devices, enrol, identities, sites
from provisioning.cli.shared import DEFAULT_DIR

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
app.add_typer(ca.ca_app, name="ca", no_args_is_help=True)
app.add_typer(sites.site_app, name="site", no_args_is_help=True)
app.add_typer(devices.device_app, name="device", no_args_is_help=True)
app.add_typer(identities.identity_app, name="identity", no_args_is_help=True)
app.add_typer(ca.crl_app, name="crl", no_args_is_help=True)
app.add_typer(ca.issuing_app, name="issuing-ca", no_args_is_help=True)
app.command("bundle")(devices.bundle)
app.command("broker-config")(broker.broker_config)
app.command("enrol-server")(enrol.enrol_server)
devices.device_app.command("token")(enrol.device_token)
app.command("broker-kick")(broker.broker_kick)


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


def main() -> None:
    """Console entry point."""
    app()
