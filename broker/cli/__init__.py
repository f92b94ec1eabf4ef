"""`jaga-collector`: run the collector, audit what it stored.

One module per command group: run, arming (arm, disarm, bypass, unbypass, trail, pin-hash),
audit (verify, quiet, verify-export), evidence (export, missing), alerts (list, ack); grafana
and web bring their own apps; shared holds the --config option, the config and key store it
leads to, and the one-line failure.
broker/entry.py is the console script: it checks the collector's extra before importing this.
"""

from __future__ import annotations

import typer

from broker.cli import alerts, arming, audit, evidence, run
from broker.grafana.cli import grafana_app
from broker.web.cli import web_app

app = typer.Typer(
    help="Jaga collector: takes signed events from Mosquitto, verifies them, stores them in "
    "InfluxDB and audits them.",
    no_args_is_help=True,
)
app.command()(run.run)
app.command()(arming.arm)
app.command()(arming.disarm)
app.command()(arming.bypass)
app.command()(arming.unbypass)
app.command("pin-hash")(arming.pin_hash)
app.command()(arming.trail)
app.add_typer(audit.audit_app, name="audit")
app.add_typer(evidence.evidence_app, name="evidence")
app.add_typer(grafana_app, name="grafana")
app.add_typer(web_app, name="web")
app.add_typer(alerts.alerts_app, name="alerts")


def main() -> None:
    """Console entry point (through broker/entry.py)."""
    app()
