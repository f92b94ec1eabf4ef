"""`jaga-collector audit`: re-check what the collector stored, offline: every event's
signature and chain, a unit's quiet window, an evidence export against a CA you trust."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from broker.cli.evidence import export_window
from broker.cli.shared import DEFAULT_CONFIG, ConfigOpt, fail, key_store, load

if TYPE_CHECKING:
    from cryptography import x509

audit_app = typer.Typer(help="Re-check stored events offline.", no_args_is_help=True)


def _parse_time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--{name} {value!r}: use ISO 8601, e.g. 2026-11-27T18:00:00+07:00") from None
    if when.tzinfo is None:
        raise fail(f"--{name} {value!r}: give a time zone, e.g. +07:00 for WIB")
    return int(when.timestamp() * 1e9)


@audit_app.command("verify")
def audit_verify(
    site: Annotated[str, typer.Option(help="site id")],
    since: Annotated[str | None, typer.Option(help="ISO 8601 start, with zone")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 end, with zone")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list each problem")] = False,
) -> None:
    """Re-check every stored event's signature and chain; exit 1 if anything fails or a gap
    is one no resend can close."""
    import sqlite3

    from broker.audit import CollectorBook, audit_site
    from broker.evidence import EvidenceVault
    from broker.influx_reader import InfluxReader, QueryFailed

    cfg = load(config)
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
            key_store(cfg),
            site,
            since_ns=_parse_time(since, "since"),
            until_ns=_parse_time(until, "until"),
            evidence=store,
            book=book,
        )
    except QueryFailed as exc:
        raise fail(str(exc)) from None
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
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Was the unit's window quiet, provably? Exit 0: its signed chain covers the window
    unbroken, checkpoints close enough, every door closed, no motion while armed. Exit 1:
    each gap and each event that breaks it, named."""
    from zoneinfo import ZoneInfo

    from broker import audit_quiet as q
    from broker.influx_reader import InfluxReader, QueryFailed
    from provisioning.errors import ProvisioningError
    from provisioning.registry import Registry

    cfg = load(config)
    keys = key_store(cfg)
    try:
        zone = ZoneInfo(Registry(cfg.registry_dir).site(site).timezone)
    except ProvisioningError as exc:
        raise fail(str(exc)) from None
    try:
        window = q.Window(
            site,
            device,
            q.parse_when(start, zone, "--from"),
            q.parse_when(end, zone, "--to"),
            int(slack * 1e9),
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    if window.end_ns <= window.start_ns:
        raise fail(f"--to {end!r} is not after --from {start!r}")
    if not 0 <= slack <= 3600:
        raise fail(f"--slack {slack}: give 0 to 3600 seconds")
    ql = InfluxReader(cfg.influx.influxql_url, cfg.influx.influxql_database, cfg.influx.token)
    try:
        stored = q.read_chain(ql, keys, window)
        report = q.judge(window, stored.events, q.read_arming(ql, window), stored.problems, zone)
    except QueryFailed as exc:
        raise fail(str(exc)) from None
    for line in q.lines(report, zone):
        typer.echo(line)
    if export_dir is not None:
        export_window(cfg, export_dir, window, sorted(stored.events, key=lambda e: e.seq))
    if not report.quiet:
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
    witness_fingerprint: Annotated[
        list[str] | None,
        typer.Option(
            "--witness-fingerprint",
            help="a witness key's fingerprint (64 hex digits), published by the witness in "
            "advance (`jaga-witness init`); its cosignatures must cover the export's events. "
            "Repeat for more.",
        ),
    ] = None,
) -> None:
    """Re-check an evidence export offline against a CA you trust, as its verify.sh does:
    certificates, signatures, the chain's links, every picture's hash, and the cosignatures of
    each witness named."""
    from broker.export_verify import ExportError, PinnedCA, normalise_fingerprint, verify_export

    if (ca_fingerprint is None) == (ca is None):
        given = "both --ca-fingerprint and --ca" if ca is not None else "no CA to check against"
        raise fail(f"{given}. {PIN_HELP}")
    if ca is not None:
        pinned = PinnedCA.of(_load_ca_file(ca))
    else:
        try:
            pinned = PinnedCA(normalise_fingerprint(str(ca_fingerprint)))
        except ValueError as exc:
            raise fail(f"--ca-fingerprint: {exc}") from None
    witnesses: list[str] = []
    for given in witness_fingerprint or []:
        try:
            witnesses.append(normalise_fingerprint(given))
        except ValueError:
            raise fail(
                f"--witness-fingerprint {given[:80]!r}: a witness fingerprint is 64 hexadecimal "
                "digits (SHA-256 of its public key's SPKI DER, as `jaga-witness init` prints it)"
            ) from None
    if not folder.is_dir():
        raise fail(f"{folder} is not a folder; give the folder `evidence export` wrote")
    try:
        report = verify_export(folder, pinned, tuple(witnesses))
    except ExportError as exc:
        raise fail(str(exc), 1) from None
    for line in report.witnessed:
        typer.echo(line)
    for problem in report.problems:
        typer.echo(f"  {problem}")
    if witnesses:
        typer.echo(
            f"witnesses: {report.cosignatures} cosignatures verified of "
            f"{len(set(witnesses))} witnesses named"
        )
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
        raise fail(f"--ca {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise fail(f"--ca {path}: not an X.509 certificate (PEM or DER)") from None
