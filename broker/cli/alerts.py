"""`jaga-collector alerts`: the alert store read back, and an operator's acknowledgement sent
through the collector.

A silent alert (duress, #18) is kept in the store like any other, but only the routes marked
`duress = true` are told of it: whoever reads this list at the site (a guard at the server's
terminal, perhaps the very person forced to disarm) must not see it, so `list` leaves it out,
without a hint, unless `--include-duress` asks for it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from broker.cli.shared import DEFAULT_CONFIG, ByOpt, ConfigOpt, fail, load

alerts_app = typer.Typer(help="Alerts: list them, acknowledge them.", no_args_is_help=True)


@alerts_app.command("list")
def alerts_list(
    site: Annotated[str | None, typer.Option(help="only this site")] = None,
    all_: Annotated[bool, typer.Option("--all", help="closed ones too")] = False,
    include_duress: Annotated[
        bool,
        typer.Option(
            "--include-duress",
            help="silent duress alerts too (left out otherwise: only duress routes hear them)",
        ),
    ] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Open alerts, newest first."""
    import datetime as dt
    import sqlite3

    from broker.alerts.rules import is_silent
    from broker.alerts.store import read_alerts

    cfg = load(config)
    try:
        alerts = read_alerts(cfg.data_dir / "alerts.sqlite3", open_only=not all_, site=site)
    except sqlite3.Error as exc:
        raise fail(f"cannot read the alert store in {cfg.data_dir}: {exc}") from None
    if not include_duress:
        alerts = [a for a in alerts if not is_silent(a.rule)]
    if not alerts:
        typer.echo("no alerts")
        return
    for a in alerts:
        when = dt.datetime.fromtimestamp(a.raised_at / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        who = f" acked by {a.acked_by}" if a.acked_by else ""
        typer.echo(
            f"{a.id:<26} {a.severity.value:<8} {a.state.value:<12} {when} "
            f"{a.site}/{a.device} {a.title}{who}"
        )


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[str, typer.Argument(help="the alert's id (from alerts list)")],
    site: Annotated[str, typer.Option(help="the alert's site")],
    by: ByOpt,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Acknowledge an alert: someone is on it."""
    from broker.operator import OperatorError, send

    cfg = load(config)
    try:
        send(cfg, site, "ack", by, alert_id=alert_id)
    except (OperatorError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"ack of {alert_id} sent by {by}")
