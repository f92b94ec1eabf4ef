"""`jaga-collector grafana ...`: write the Grafana provisioning tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broker.grafana.datasource import DEFAULT_DATABASE, DEFAULT_URL, DatasourceSettings
from broker.grafana.export import DASHBOARDS_PATH, ExportSettings, export
from broker.grafana.panels import EVIDENCE_URL

grafana_app = typer.Typer(
    help="Grafana dashboards and datasource for the control room.", no_args_is_help=True
)


@grafana_app.command("export")
def export_command(
    directory: Annotated[
        Path, typer.Argument(help="provisioning directory (Grafana's paths.provisioning)")
    ],
    influx_url: Annotated[
        str, typer.Option(help="InfluxDB URL as Grafana's server reaches it")
    ] = DEFAULT_URL,
    database: Annotated[
        str, typer.Option(help="InfluxQL database (on InfluxDB 2.x/3, the DBRP-mapped one)")
    ] = DEFAULT_DATABASE,
    evidence_url: Annotated[
        str, typer.Option(help="guard-post page base URL; event links open <url>/events/<id>")
    ] = EVIDENCE_URL,
    dashboards_path: Annotated[
        str,
        typer.Option(
            help="absolute path of the dashboards' JSON as Grafana sees it (the default "
            "follows GF_PATHS_PROVISIONING; give one when paths.provisioning is set in "
            "grafana.ini instead)"
        ),
    ] = DASHBOARDS_PATH,
) -> None:
    """Write DIR/datasources/ and DIR/dashboards/ for Grafana to load at start."""
    settings = ExportSettings(
        datasource=DatasourceSettings(url=influx_url, database=database),
        evidence_url=evidence_url.rstrip("/"),
        dashboards_path=dashboards_path,
    )
    try:
        written = export(directory, settings)
    except OSError as exc:
        typer.echo(f"jaga-collector: cannot write {directory}: {exc}", err=True)
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"wrote {path}")
