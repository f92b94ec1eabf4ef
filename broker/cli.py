"""`jaga-collector`: run the collector, audit what it stored."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from broker.config import CollectorConfig, load_config
from broker.grafana.cli import grafana_app
from broker.web.cli import web_app
from kernel.config import ConfigError

if TYPE_CHECKING:
    from cryptography import x509

    from broker.collector.service import Collector
    from broker.web.server import WebServer

app = typer.Typer(
    help="Jaga collector: takes signed events from Mosquitto, verifies them, stores them in "
    "InfluxDB and audits them.",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="Re-check stored events offline.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
evidence_app = typer.Typer(help="Evidence pictures kept by the collector.", no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")
app.add_typer(grafana_app, name="grafana")
app.add_typer(web_app, name="web")

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
    # A misspelt site would be a subscription that never delivers: nothing stored, no error.
    known = {p.stem for p in (config.registry_dir / "sites").glob("*.toml")}
    unknown = sorted(set(config.mqtt.sites) - known)
    if unknown:
        raise _fail(
            f"mqtt.sites names {', '.join(unknown)}, not a site of the registry "
            f"{config.registry_dir} (it has: {', '.join(sorted(known)) or 'none'})"
        )
    return KeyStore(config.registry_dir)


@app.command()
def run(
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the collector until stopped (SIGTERM or Ctrl-C)."""
    from broker.collector.service import Collector
    from service.logs import setup_logging
    from service.units import supervise_collector

    setup_logging(log_level)
    cfg = _load(config)
    try:
        collector = Collector(cfg, _keys(cfg))
    except OSError as exc:  # a TLS file or the data folder named in the config
        raise _fail(f"{exc.strerror or exc}: {exc.filename or ''} (check collector.toml)") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    web = _start_web(cfg, collector)
    collector.start()
    try:
        # systemd: READY=1 once subscribed, STATUS= and health-gated WATCHDOG=1, STOPPING=1.
        with supervise_collector(collector, stop) as unit:
            collector.run(stop, on_tick=unit.tick)
    finally:
        if web is not None:
            web.stop()
        collector.close()


def _start_web(cfg: CollectorConfig, collector: Collector) -> WebServer | None:
    """The guard-post page on its own thread, fed by the collector's LiveState."""
    if cfg.web is None:
        return None
    from broker.evidence_events import EvidenceEvents
    from broker.influx_reader import InfluxReader
    from broker.web.registry import preload
    from broker.web.server import WebError, serve

    preload(collector.live, cfg.registry_dir)
    ql = InfluxReader(cfg.influx.influxql_url, cfg.influx.influxql_database, cfg.influx.token)
    try:
        return serve(
            collector.live,
            cfg.web,
            data_dir=cfg.data_dir,
            ack=collector.ack_from_web,
            evidence=collector.evidence,
            events=EvidenceEvents(ql),
        )
    except WebError as exc:
        raise _fail(str(exc)) from None


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
    """Re-check every stored event's signature and chain; exit 1 if anything fails or a gap
    is one no resend can close."""
    import sqlite3

    from broker.audit import CollectorBook, audit_site
    from broker.evidence import EvidenceVault
    from broker.influx_reader import InfluxReader, QueryFailed

    cfg = _load(config)
    ql = InfluxReader(cfg.influx.influxql_url, cfg.influx.influxql_database, cfg.influx.token)
    book_path = cfg.data_dir / "chain.sqlite3"
    try:
        book: CollectorBook | None = CollectorBook(book_path)
    except sqlite3.Error as exc:
        typer.echo(
            f"  cannot read the collector's chain book {book_path} ({exc}): any gap counts "
            "as one no resend can close (run this where the collector keeps its data_dir)"
        )
        book = None
    try:
        store = EvidenceVault(cfg.data_dir / "evidence")
        report = audit_site(
            ql,
            _keys(cfg),
            site,
            since_ns=_parse_time(since, "since"),
            until_ns=_parse_time(until, "until"),
            evidence=store,
            book=book,
        )
    except QueryFailed as exc:
        raise _fail(str(exc)) from None
    finally:
        if book is not None:
            book.close()
    for problem in report.problems if verbose else report.problems[:20]:
        typer.echo(f"  {problem}")
    if report.picture_events:
        typer.echo(report.evidence_line())
    typer.echo(report.line())
    if not report.ok:
        raise typer.Exit(1)


WHEN_HELP = (
    "ISO 8601 with a zone (2026-11-27T22:00:00+07:00), or without one in the site's own time "
    "zone (2026-11-27T22:00)"
)


@audit_app.command("quiet")
def audit_quiet(
    site: Annotated[str, typer.Option(help="site id")],
    device: Annotated[str, typer.Option(help="the unit")],
    start: Annotated[str, typer.Option("--from", help=f"window start: {WHEN_HELP}")],
    end: Annotated[str, typer.Option("--to", help=f"window end: {WHEN_HELP}")],
    slack: Annotated[
        float, typer.Option(help="seconds allowed beyond twice the checkpoint interval")
    ] = 5.0,
    export_dir: Annotated[
        Path | None,
        typer.Option("--export", help="a new (or empty) folder for the window's signed chain"),
    ] = None,
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
) -> None:
    """Was the unit's window quiet, provably? Exit 0: its signed chain covers the window
    unbroken, checkpoints close enough, every door closed, no motion while armed. Exit 1:
    each gap and each event that breaks it, named."""
    from zoneinfo import ZoneInfo

    from broker import audit_quiet as q
    from broker.influx_reader import InfluxReader, QueryFailed
    from provisioning.errors import ProvisioningError
    from provisioning.registry import Registry

    cfg = _load(config)
    keys = _keys(cfg)
    try:
        zone = ZoneInfo(Registry(cfg.registry_dir).site(site).timezone)
    except ProvisioningError as exc:
        raise _fail(str(exc)) from None
    try:
        window = q.Window(
            site,
            device,
            q.parse_when(start, zone, "--from"),
            q.parse_when(end, zone, "--to"),
            int(slack * 1e9),
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if window.end_ns <= window.start_ns:
        raise _fail(f"--to {end!r} is not after --from {start!r}")
    if not 0 <= slack <= 3600:
        raise _fail(f"--slack {slack}: give 0 to 3600 seconds")
    ql = InfluxReader(cfg.influx.influxql_url, cfg.influx.influxql_database, cfg.influx.token)
    try:
        stored = q.read_chain(ql, keys, window)
        report = q.judge(window, stored.events, q.read_arming(ql, window), stored.problems, zone)
    except QueryFailed as exc:
        raise _fail(str(exc)) from None
    for line in q.lines(report, zone):
        typer.echo(line)
    if export_dir is not None:
        _export_quiet(cfg, export_dir, window, sorted(stored.events, key=lambda e: e.seq))
    if not report.quiet:
        raise typer.Exit(1)


def _export_quiet(cfg: CollectorConfig, dest: Path, window: Any, events: list[Any]) -> None:
    """The window's events and the unit's chain from the checkpoint before them to the one
    after, in the offline-checkable form of an evidence export (verify.sh, verify-export)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from broker.evidence import EvidenceVault
    from broker.export import Evidence, ExportError, export
    from broker.export_chain import ChainError, stretch_around
    from provisioning.registry import Registry

    inside = [e for e in events if window.start_ns <= e.ts <= window.end_ns]
    subject = inside or [e for e in events if e.ts < window.start_ns][-1:]
    if not subject:
        raise _fail("nothing to export: no event of the unit is stored around the window")
    registry = Registry(cfg.registry_dir)
    cert = registry.device_certificate(window.site, window.device)
    if cert is None:
        raise _fail(f"no certificate for {window.site}/{window.device} in the registry")
    try:
        stretch = stretch_around(events, subject)
        export(
            Evidence(subject[0].id, tuple(subject), stretch),
            EvidenceVault(cfg.data_dir / "evidence"),
            cert.public_bytes(Encoding.PEM),
            registry.ca_certificate().public_bytes(Encoding.PEM),
            dest,
        )
    except (ChainError, ExportError) as exc:
        raise _fail(f"cannot export the window: {exc}") from None
    except OSError as exc:
        raise _fail(f"{exc.filename or dest}: {exc.strerror or exc}") from None
    typer.echo(
        f"exported seq {stretch.events[0].seq}..{stretch.events[-1].seq} "
        f"({stretch.starts_at.value} to {stretch.ends_at.value}) to {dest}"
    )


@evidence_app.command("export")
def evidence_export(
    event_id: Annotated[str, typer.Argument(help="the event (a door opening, or its snapshot)")],
    dest: Annotated[
        Path, typer.Argument(help="a new (or empty) folder for the export (a USB stick's)")
    ],
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
) -> None:
    """Export an event, its unit's chain around it and its pictures, with a verify.sh that
    checks them with openssl alone (and `audit verify-export` too)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from broker.evidence import EvidenceVault
    from broker.evidence_events import EvidenceEvents
    from broker.export import ExportError, export, gather
    from broker.influx_reader import InfluxReader, QueryFailed
    from provisioning.registry import Registry

    cfg = _load(config)
    ql = InfluxReader(cfg.influx.influxql_url, cfg.influx.influxql_database, cfg.influx.token)
    try:
        evidence = gather(EvidenceEvents(ql), event_id)
        unit = evidence.subject[0]
        registry = Registry(cfg.registry_dir)
        cert = registry.device_certificate(unit.site, unit.device)
        if cert is None:
            raise ExportError(f"no certificate for {unit.site}/{unit.device} in the registry")
        store = EvidenceVault(cfg.data_dir / "evidence")
        try:
            export(
                evidence,
                store,
                cert.public_bytes(Encoding.PEM),
                registry.ca_certificate().public_bytes(Encoding.PEM),
                dest,
            )
        finally:
            store.close()
    except (ExportError, QueryFailed) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # reading the store, writing the destination
        raise _fail(f"{exc.filename or dest}: {exc.strerror or exc}") from None
    chain = evidence.stretch
    typer.echo(
        f"exported {dest}: {len(chain.events)} events of {unit.site}/{unit.device} (seq "
        f"{chain.events[0].seq} to {chain.events[-1].seq}: from {chain.starts_at} to "
        f"{chain.ends_at}), {len(evidence.pictures)} pictures; check it with "
        f"`sh {dest / 'verify.sh'} <ca-fingerprint>`"
    )


@evidence_app.command("missing")
def evidence_missing(
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
) -> None:
    """Events whose signed pictures are not (all) in the store; exit 1 if there are any."""
    from broker.evidence import EvidenceVault
    from broker.evidence_gaps import EvidencePlanner

    cfg = _load(config)
    store = EvidenceVault(cfg.data_dir / "evidence")
    try:
        planner = EvidencePlanner(grace_ns=int(cfg.evidence_grace_s * 1e9))
        unfinished = store.unfinished()
    finally:
        store.close()
    for u in unfinished:
        when = dt.datetime.fromtimestamp(u.vouched_ns / 1e9).astimezone().isoformat("T", "seconds")
        unit = f"{u.site}/{u.device} seq {u.seq}" if u.device else "unit unknown"
        state = "given up" if planner.given_up(u) else "asking" if u.asks else "waiting"
        typer.echo(
            f"{u.event_id}  {unit}  stored {when}  {len(u.missing)} of {u.pictures} pictures "
            f"missing  asked {u.asks}x ({state})"
        )
        for sha in u.missing:
            typer.echo(f"    {sha}")
    typer.echo(
        f"evidence: {len(unfinished)} events missing {sum(len(u.missing) for u in unfinished)}"
        " pictures"
    )
    if unfinished:
        raise typer.Exit(1)


PIN_HELP = (
    "Give the site CA's fingerprint, published in advance: --ca-fingerprint HEX (the technician "
    "prints it with `jaga-provision ca fingerprint` on the laptop that holds the CA), or --ca "
    "FILE with a CA certificate you obtained yourself. Never the one inside the export: anyone "
    "can make an export that vouches for itself."
)


@audit_app.command("verify-export")
def audit_verify_export(
    folder: Annotated[Path, typer.Argument(help="a folder made by `evidence export`")],
    ca_fingerprint: Annotated[
        str | None,
        typer.Option(
            "--ca-fingerprint",
            help="SHA-256 fingerprint of the site CA (64 hex digits), published in advance "
            "(`jaga-provision ca fingerprint`)",
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option("--ca", help="the site CA's certificate (PEM), obtained outside the export"),
    ] = None,
) -> None:
    """Re-check an evidence export offline against a CA you trust, as its verify.sh does:
    certificates, signatures, the chain's links, every picture's hash."""
    from broker.export_verify import ExportError, PinnedCA, normalise_fingerprint, verify_export

    if (ca_fingerprint is None) == (ca is None):
        given = "both --ca-fingerprint and --ca" if ca is not None else "no CA to check against"
        raise _fail(f"{given}. {PIN_HELP}")
    if ca is not None:
        pinned = PinnedCA.of(_load_ca_file(ca))
    else:
        try:
            pinned = PinnedCA(normalise_fingerprint(str(ca_fingerprint)))
        except ValueError as exc:
            raise _fail(f"--ca-fingerprint: {exc}") from None
    if not folder.is_dir():
        raise _fail(f"{folder} is not a folder; give the folder `evidence export` wrote")
    try:
        report = verify_export(folder, pinned)
    except ExportError as exc:
        raise _fail(str(exc), 1) from None
    for problem in report.problems:
        typer.echo(f"  {problem}")
    typer.echo(
        f"export: {report.events} events, {report.pictures} pictures verified, "
        f"{len(report.problems)} problems (CA {pinned.fingerprint})"
    )
    if not report.ok:
        raise typer.Exit(1)


def _load_ca_file(path: Path) -> x509.Certificate:
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(f"--ca {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise _fail(f"--ca {path}: not an X.509 certificate (PEM or DER)") from None


ByOpt = Annotated[str, typer.Option("--by", help="operator name (their certificate signs it)")]


def _arming(site: str, by: str, config: Path, name: Literal["arm", "disarm"]) -> None:
    from broker.operator import OperatorError, send

    cfg = _load(config)
    try:
        state = send(cfg, site, name, by)
    except (OperatorError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if state is None:
        typer.echo(f"{name} sent for {site}; the collector did not answer yet (is it running?)")
        return
    typer.echo(f"{site}: {state.state.value} (by {state.by}, {state.how.value})")


@app.command()
def arm(
    site: Annotated[str, typer.Argument(help="site id")],
    by: ByOpt,
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
) -> None:
    """Arm a site now (after its exit delay); recorded with who did it."""
    _arming(site, by, config, "arm")


@app.command()
def disarm(
    site: Annotated[str, typer.Argument(help="site id")],
    by: ByOpt,
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
) -> None:
    """Disarm a site now; recorded with who did it."""
    _arming(site, by, config, "disarm")


alerts_app = typer.Typer(help="Alerts: list them, acknowledge them.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def alerts_list(
    site: Annotated[str | None, typer.Option(help="only this site")] = None,
    all_: Annotated[bool, typer.Option("--all", help="closed ones too")] = False,
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
) -> None:
    """Open alerts, newest first."""
    import datetime as dt
    import sqlite3

    from broker.alerts.store import read_alerts

    cfg = _load(config)
    try:
        alerts = read_alerts(cfg.data_dir / "alerts.sqlite3", open_only=not all_, site=site)
    except sqlite3.Error as exc:
        raise _fail(f"cannot read the alert store in {cfg.data_dir}: {exc}") from None
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
    config: ConfigOpt = Path("/etc/jaga/collector.toml"),
) -> None:
    """Acknowledge an alert: someone is on it."""
    from broker.operator import OperatorError, send

    cfg = _load(config)
    try:
        send(cfg, site, "ack", by, alert_id=alert_id)
    except (OperatorError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"ack of {alert_id} sent by {by}")


def main() -> None:
    app()
