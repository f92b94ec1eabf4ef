"""`jaga-witness`: an independent party's key, its watch over the units' chains, its check of
the collector's store. Exit 2 for a mistake to fix (the message says how), 1 when `check`
finds events the server no longer has."""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from kernel.config import ConfigError
from witness.config import WitnessConfig, load_config

if TYPE_CHECKING:
    from witness.log import WitnessLog

app = typer.Typer(
    help="Jaga witness: checks every unit's signed hash chain as it grows and cosigns its "
    "heads with a key of its own; `check` names events the server no longer has.",
    no_args_is_help=True,
)
ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="witness.toml", envvar="JAGA_WITNESS_CONFIG")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"jaga-witness: {message}", err=True)
    return typer.Exit(code)


def _load(path: Path) -> WitnessConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@app.command()
def init(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. bawaslu-bangka-barat.")],
    dir: Annotated[Path, typer.Option("--dir", help="Folder for witness.key and witness.pub.")],
) -> None:
    """Make the witness's own Ed25519 signing key and print its fingerprint to publish."""
    from protocol.ids import InvalidIdentifier, check_id
    from witness.keys import WitnessKeyError, make_key

    try:
        check_id(name, "witness name", allow_reserved=True)
        made = make_key(dir)
    except (InvalidIdentifier, WitnessKeyError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write into {dir}: {exc.strerror or exc}") from None
    typer.echo(f"witness {name}: wrote {made.key_path} (mode 0600) and {made.public_path}")
    typer.echo(made.fingerprint)
    typer.echo(
        "publish this fingerprint (SHA-256 of the public key's SPKI DER; check it with "
        f"`openssl pkey -pubin -in {made.public_path} -outform DER | sha256sum`) and hand "
        "witness.pub to the auditors; the key never leaves this machine",
        err=True,
    )


@app.command()
def fingerprint(
    dir: Annotated[Path, typer.Option("--dir", help="Folder holding witness.key.")],
) -> None:
    """Print the fingerprint of the witness's key again."""
    from protocol.cosignature import fingerprint as of
    from witness.keys import KEY_FILE, WitnessKeyError, load_key

    try:
        typer.echo(of(load_key(dir / KEY_FILE).public_key()))
    except WitnessKeyError as exc:
        raise _fail(str(exc)) from None


@app.command()
def run(config: ConfigOpt) -> None:
    """Watch the sites' units: check, log and cosign their chains; report forks and rewinds."""
    from witness.keys import WitnessKeyError, load_key
    from witness.service import Witness
    from witness.units import TrustError, UnitKeys, load_pinned_ca

    cfg = _load(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        key = load_key(cfg.key)
        ca = load_pinned_ca(cfg.registry_dir, cfg.ca_fingerprint)
        book = _open_log(cfg.log_path)
        witness = Witness(cfg, key, book, UnitKeys(cfg.registry_dir, ca))
    except (WitnessKeyError, TrustError) as exc:
        raise _fail(str(exc)) from None
    except FileNotFoundError as exc:
        raise _fail(f"{exc.filename}: {exc.strerror} (check mqtt.tls in {config})") from None
    except OSError as exc:
        raise _fail(f"cannot open the witness log in {cfg.data_dir}: {exc}") from None
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logging.getLogger("jaga.witness").info("witness %s watching %s", cfg.name, ", ".join(cfg.sites))
    witness.start()
    try:
        witness.run(stop)
    finally:
        witness.close()
        book.close()


def _open_log(path: Path) -> WitnessLog:
    """The witness's log; a damaged file is one line that says what to do, not a traceback."""
    from witness.log import WitnessLog

    try:
        return WitnessLog(path)
    except sqlite3.DatabaseError as exc:
        raise _fail(
            f"{path}: the witness log is damaged ({exc}): restore it from its backup"
        ) from None


@app.command()
def status(config: ConfigOpt) -> None:
    """One line from the witness's log: cosignatures made, units covered, forks refused."""

    cfg = _load(config)
    if not cfg.log_path.exists():
        raise _fail(f"no witness log at {cfg.log_path} yet: start `jaga-witness run` first")
    book = _open_log(cfg.log_path)
    try:
        s = book.summary()
    finally:
        book.close()
    typer.echo(
        f"witness: {cfg.name} cosigned {s.cosignatures} chain heads of {s.units} units, "
        f"{s.forks} forks"
    )


@app.command()
def check(
    config: ConfigOpt,
    influx: Annotated[
        str, typer.Option("--influx", help="The collector's InfluxDB query URL (InfluxQL).")
    ],
    database: Annotated[str, typer.Option(help="Its database (InfluxDB 2/3: the DBRP).")] = "jaga",
    token: Annotated[
        str, typer.Option(help="InfluxDB token, if it asks for one.", envvar="INFLUX_TOKEN")
    ] = "",
) -> None:
    """Name every event the witness saw that the server no longer has, or has changed."""
    from broker.influx_reader import InfluxReader, QueryFailed
    from witness.check import check as run_check

    cfg = _load(config)
    if not cfg.log_path.exists():
        raise _fail(f"no witness log at {cfg.log_path}: nothing witnessed to check")
    book = _open_log(cfg.log_path)
    try:
        result = run_check(book, InfluxReader(influx, database, token))
    except QueryFailed as exc:
        raise _fail(f"{exc} (check --influx and --database)") from None
    finally:
        book.close()
    for finding in result.findings:
        typer.echo(finding.line())
    typer.echo(
        f"check: {result.events} events of {result.units} units witnessed, "
        f"{len(result.findings)} missing or changed on the server"
    )
    if result.findings:
        raise typer.Exit(1)


def main() -> None:
    app()
