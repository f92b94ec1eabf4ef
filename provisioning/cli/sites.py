"""`jaga-provision site ...`: warehouse sites."""

from __future__ import annotations

from typing import Annotated

import typer

from provisioning.cli.shared import (
    DirOption,
    existing_registry,
    open_registry,
    reports_mistakes,
    say,
)
from provisioning.register import add_site

site_app = typer.Typer(help="Warehouse sites and the broker their units dial.")


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
