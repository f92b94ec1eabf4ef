"""`jaga-collector evidence`: export an event with its chain and pictures for an auditor, and
list the events whose signed pictures the store still misses; `audit quiet --export` writes
its window in the same form."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.cli.shared import DEFAULT_CONFIG, ConfigOpt, fail, load
from broker.config import CollectorConfig

evidence_app = typer.Typer(help="Evidence pictures kept by the collector.", no_args_is_help=True)


@evidence_app.command("export")
def evidence_export(
    event_id: Annotated[str, typer.Argument(help="the event (a door opening, or its snapshot)")],
    dest: Annotated[
        Path, typer.Argument(help="a new (or empty) folder for the export (a USB stick's)")
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Export an event, its unit's chain around it and its pictures, with a verify.sh that
    checks them with openssl alone (and `audit verify-export` too)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from broker.evidence import EvidenceVault
    from broker.evidence_events import EvidenceEvents
    from broker.export import ExportError, export, gather
    from broker.influx_reader import InfluxReader, QueryFailed
    from provisioning.registry import Registry

    cfg = load(config)
    ql = InfluxReader(cfg.influx.influxql_url, cfg.influx.influxql_database, cfg.influx.token)
    try:
        evidence = gather(EvidenceEvents(ql), event_id)
        unit = evidence.subject[0]
        registry = Registry(cfg.registry_dir)
        certificates = _lineage(registry, evidence.stretch.events)
        store = EvidenceVault(cfg.data_dir / "evidence")
        try:
            export(
                evidence,
                store,
                certificates.unit_pem,
                registry.ca_certificate().public_bytes(Encoding.PEM),
                dest,
                registry.witness_public_keys(),
                issuing_cert=certificates.issuing_pem,
                more_units=certificates.more_units,
                more_issuing=certificates.more_issuing,
            )
        finally:
            store.close()
    except (ExportError, QueryFailed) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # reading the store, writing the destination
        raise fail(f"{exc.filename or dest}: {exc.strerror or exc}") from None
    chain = evidence.stretch
    typer.echo(
        f"exported {dest}: {len(chain.events)} events of {unit.site}/{unit.device} (seq "
        f"{chain.events[0].seq} to {chain.events[-1].seq}: from {chain.starts_at} to "
        f"{chain.ends_at}), {len(evidence.pictures)} pictures, {len(evidence.cosignatures)} "
        f"witness cosignatures; check it with "
        f"`sh {dest / 'verify.sh'} <ca-fingerprint> [<witness-fingerprint> ...]`"
    )


@evidence_app.command("missing")
def evidence_missing(
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Events whose signed pictures are not (all) in the store; exit 1 if there are any."""
    from broker.evidence import EvidenceVault
    from broker.evidence_gaps import EvidencePlanner

    cfg = load(config)
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


def export_window(cfg: CollectorConfig, dest: Path, window: Any, events: list[Any]) -> None:
    """The window's events and the unit's chain from the checkpoint before them to the one
    after, in the offline-checkable form of an evidence export (verify.sh, verify-export);
    `audit quiet --export`."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from broker.evidence import EvidenceVault
    from broker.export import Evidence, ExportError, export
    from broker.export_chain import ChainError, stretch_around
    from provisioning.registry import Registry

    inside = [e for e in events if window.start_ns <= e.ts <= window.end_ns]
    subject = inside or [e for e in events if e.ts < window.start_ns][-1:]
    if not subject:
        raise fail("nothing to export: no event of the unit is stored around the window")
    registry = Registry(cfg.registry_dir)
    try:
        stretch = stretch_around(events, subject)
        certificates = _lineage(registry, stretch.events)
        export(
            Evidence(subject[0].id, tuple(subject), stretch),
            EvidenceVault(cfg.data_dir / "evidence"),
            certificates.unit_pem,
            registry.ca_certificate().public_bytes(Encoding.PEM),
            dest,
            issuing_cert=certificates.issuing_pem,
            more_units=certificates.more_units,
            more_issuing=certificates.more_issuing,
        )
    except (ChainError, ExportError) as exc:
        raise fail(f"cannot export the window: {exc}") from None
    except OSError as exc:
        raise fail(f"{exc.filename or dest}: {exc.strerror or exc}") from None
    typer.echo(
        f"exported seq {stretch.events[0].seq}..{stretch.events[-1].seq} "
        f"({stretch.starts_at.value} to {stretch.ends_at.value}) to {dest}"
    )


def _lineage(registry: Any, events: Any) -> Any:
    """Every certificate of the unit whose key signed one of the events (it renews with a new
    key, #19), and the issuing CA certificates they chain through (broker/export_lineage.py);
    ExportError when the registry holds none for the unit."""
    from broker.export import ExportError
    from broker.export_lineage import lineage

    try:
        return lineage(registry, events)
    except LookupError as exc:
        raise ExportError(str(exc)) from None
