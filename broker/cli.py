"""`jaga-collector`: run the collector, audit what it stored."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from broker.config import CollectorConfig, ConfigError, load_config

app = typer.Typer(
    help="Jaga collector: takes signed events from Mosquitto, verifies them, stores them in "
    "InfluxDB and audits them.",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="Re-check stored events offline.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="collector.toml", envvar="JAGA_COLLECTOR_CONFIG"),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"jaga-collector: {message}", err=True)
    return typer.Exit(code)


def _load(path: Path) -> CollectorConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _keys(config: CollectorConfig):  # type: ignore[no-untyped-def]
    from broker.keys import KeyStore

    if not config.registry_dir.is_dir():
        raise _fail(f"registry_dir {config.registry_dir} does not exist (the provisioning dir)")
    return KeyStore(config.registry_dir)


@app.command()
def run(
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the collector until stopped (SIGTERM or Ctrl-C)."""
    from broker.collector import Collector

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    cfg = _load(config)
    collector = Collector(cfg, _keys(cfg))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    collector.start()
    try:
        collector.run(stop)
    finally:
        collector.close()


def _parse_time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"--{name} {value!r}: use ISO 8601, e.g. 2026-11-27T18:00:00+07:00") from None
    if when.tzinfo is None:
        raise _fail(f"--{name} {value!r}: give a time zone, e.g. +07:00 for WIB")
    return int(when.timestamp() * 1e9)


@audit_app.command("verify")
def audit_verify(
    site: Annotated[str, typer.Option(help="site id")],
    since: Annotated[str | None, typer.Option(help="ISO 8601 start, with zone")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 end, with zone")] = None,
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list each problem")] = False,
) -> None:
    """Re-check every stored event's signature and chain; exit 1 if anything fails."""
    from broker.audit import audit_site
    from broker.influxql import InfluxQL, QueryFailed

    cfg = _load(config)
    ql = InfluxQL(cfg.influx.influxql_url, cfg.influx.influxql_database, cfg.influx.token)
    try:
        report = audit_site(
            ql,
            _keys(cfg),
            site,
            since_ns=_parse_time(since, "since"),
            until_ns=_parse_time(until, "until"),
        )
    except QueryFailed as exc:
        raise _fail(str(exc)) from None
    for problem in report.problems if verbose else report.problems[:20]:
        typer.echo(f"  {problem}")
    typer.echo(report.line())
    if report.failures:
        raise typer.Exit(1)


def main() -> None:
    app()
