"""`jaga-agent`: run the unit, simulate it, enrol it, check it."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from agent.config import AgentConfig, load_config
from agent.identity import IdentityError
from agent.pins import PinFactoryError, make_pin_factory
from agent.simulator import PinDriver
from kernel.config import ConfigError

app = typer.Typer(
    help="Jaga unit agent: reads the door, motion, tamper and patrol inputs of "
    "one Raspberry Pi and publishes signed events.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="the unit's agent.toml", envvar="JAGA_AGENT_CONFIG")
]
LogOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error")]


def _setup_logging(level: str) -> None:
    from service.logs import setup_logging

    setup_logging(level)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"jaga-agent: {message}", err=True)
    return typer.Exit(code)


def _load(config: Path) -> AgentConfig:
    try:
        return load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _run(
    cfg: AgentConfig,
    factory: object,
    stop: threading.Event,
    driver: PinDriver | None = None,
    driver_thread: threading.Thread | None = None,
    drain_s: float = 5.0,
) -> None:
    from agent.app import Agent
    from agent.est_client import finish_install
    from service.units import supervise_agent

    if cfg.broker.tls is not None:  # a renewal a power cut interrupted: finish it first
        try:  # (under systemd, ExecStartPre=+... renew --finish has done it with write access)
            finish_install(cfg.broker.tls.key, cfg.broker.tls.cert)
        except OSError as exc:
            logging.getLogger("jaga.agent").warning(
                "cannot finish an interrupted renewal here (%s): `jaga-agent renew --finish` "
                "as root does; starting with the pair in place",
                exc,
            )
    try:
        agent = Agent(cfg, factory)
    except (IdentityError, PinFactoryError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # a TLS file or the data folder named in the config
        raise _fail(f"{exc.strerror or exc}: {exc.filename or ''} (check agent.toml)") from None
    try:
        if driver is not None:
            driver.rest()
        agent.start()
        if driver_thread is not None:
            driver_thread.start()
        # systemd: READY=1 now, STATUS= and health-gated WATCHDOG=1 while it runs, STOPPING=1.
        with supervise_agent(agent) as unit:
            agent.run(stop, on_tick=unit.tick)
    finally:
        agent.close(drain_s)


@app.command()
def run(config: ConfigOpt = Path("/etc/jaga/agent.toml"), log_level: LogOpt = "info") -> None:
    """Run the unit on real GPIO until stopped."""
    _setup_logging(log_level)
    cfg = _load(config)
    try:
        factory = make_pin_factory(cfg.pin_factory)
    except PinFactoryError as exc:
        raise _fail(str(exc)) from None
    _run(cfg, factory, _stop_on_signals())


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Option(help="scenario TOML: a timeline of pin actions")],
    config: ConfigOpt = Path("agent.toml"),
    seconds: Annotated[float, typer.Option(help="stop after this long (0 = until Ctrl-C)")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="keep the outbox here instead of the config's data_dir")
    ] = None,
    log_level: LogOpt = "info",
) -> None:
    """Run the real agent on simulated pins (gpiozero MockFactory) driven by a scenario."""
    from agent.simulator import load_scenario, play

    _setup_logging(log_level)
    cfg = _load(config)
    if data_dir is not None:
        cfg = cfg.model_copy(update={"data_dir": data_dir.resolve()})
    try:
        plan = load_scenario(scenario, cfg)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    factory = make_pin_factory("mock")
    stop = _stop_on_signals()
    if seconds > 0:
        threading.Timer(seconds, stop.set).start()
    driver = PinDriver(cfg, factory)
    thread = threading.Thread(target=play, args=(plan, driver, stop), name="scenario", daemon=True)
    _run(cfg, factory, stop, driver, thread)


@app.command()
def enroll(
    config: ConfigOpt = Path("/etc/jaga/agent.toml"),
    force: Annotated[bool, typer.Option(help="replace an existing key (re-enrolment)")] = False,
    token: Annotated[
        str | None,
        typer.Option(help="one-time token from `jaga-provision device token` (or the bundle)"),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="read the one-time token from this file (the bundle's enrol.token)"),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="enrolment endpoint (default https://<broker host>:8443)"),
    ] = None,
) -> None:
    """Make this unit's private key (it never leaves the unit) and get it certified.

    With --token (or --token-file) the site's enrolment endpoint certifies it at once;
    without, a certificate request is written to be signed with `jaga-provision device sign`."""
    from agent.enroll import EnrollError, enroll_with_token
    from agent.enroll import enroll as make_csr
    from agent.est_client import EstError, EstUnavailable

    if token_file is not None:
        if token is not None:
            raise _fail("give the token once: --token or --token-file, not both")
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"cannot read the token from {token_file}: {exc}") from None
    if token is not None:
        try:
            cert = enroll_with_token(config, token, server, force=force)
        except (ConfigError, EnrollError, EstError) as exc:
            raise _fail(f"enrolment refused: {exc}", 1) from None
        except EstUnavailable as exc:
            raise _fail(f"enrolment endpoint unreachable, try again: {exc}", 1) from None
        typer.echo(f"enrolled: wrote {cert} and the key beside it (made here, never sent)")
        return
    try:
        csr = make_csr(config, force=force)
    except (ConfigError, EnrollError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {csr}")
    typer.echo(
        "next: copy it to the provisioning laptop and run: jaga-provision device sign "
        f"{csr.name}; then put the certificate it prints beside agent.toml"
    )


@app.command()
def renew(
    config: ConfigOpt = Path("/etc/jaga/agent.toml"),
    server: Annotated[
        str | None,
        typer.Option(help="enrolment endpoint (default https://<broker host>:8443)"),
    ] = None,
    daemon: Annotated[
        bool, typer.Option(help="keep running: renew at 2/3 of each certificate's lifetime")
    ] = False,
    now: Annotated[bool, typer.Option(help="renew at once, due or not")] = False,
    restart_unit: Annotated[
        str | None,
        typer.Option(
            help="after a renewal, `systemctl try-restart` this unit (the agent then connects "
            "and signs with the new key); the systemd timer passes jaga-agent.service"
        ),
    ] = None,
    finish: Annotated[
        bool,
        typer.Option(
            help="only finish a renewal a power cut interrupted (jaga-agent.service runs this "
            "as root before the agent starts: the agent's own sandbox cannot write /etc/jaga)"
        ),
    ] = False,
) -> None:
    """Renew this unit's certificate with a new key, authenticated by the current one."""
    from datetime import UTC, datetime

    from agent.est_client import EstError, EstUnavailable, finish_install
    from agent.renewal import due_for, renew_with_retries, run_forever, unit_tls

    cfg = _load(config)
    try:
        if cfg.broker.tls is not None and finish_install(cfg.broker.tls.key, cfg.broker.tls.cert):
            typer.echo(f"finished an interrupted renewal: {cfg.broker.tls.cert} is in place")
    except OSError as exc:
        if finish:  # before the agent starts (ExecStartPre): a unit that works alone starts
            typer.echo(
                f"warning: cannot finish the interrupted renewal ({exc}); the agent starts "
                "with the pair in place",
                err=True,
            )
            return
        raise _fail(f"cannot finish the interrupted renewal: {exc}", 1) from None
    if finish:
        return
    try:
        tls = unit_tls(cfg, server)
        if daemon:
            run_forever(tls, on_renewed=lambda _cert: _restart(restart_unit))
            return
        due, when = due_for(tls, datetime.now(UTC))
        if not (due or now):
            typer.echo(f"not due: renews from {when:%Y-%m-%d %H:%M} UTC")
            return
        cert = renew_with_retries(tls)
    except (ConfigError, EstError) as exc:
        raise _fail(f"renewal refused: {exc}", 1) from None
    except EstUnavailable as exc:
        raise _fail(f"enrolment endpoint unreachable: {exc}", 1) from None
    except OSError as exc:
        raise _fail(f"{exc.strerror or exc}: {exc.filename or ''}", 1) from None
    typer.echo(f"renewed: serial {cert.serial_number}, valid until {cert.not_valid_after_utc}")
    _restart(restart_unit)


def _restart(unit: str | None) -> None:
    """Have systemd restart the agent so it uses the renewed pair (a failure only warns: the
    pair is installed and the agent takes it at its next start)."""
    import subprocess

    if unit is None:
        return
    try:
        done = subprocess.run(
            ["systemctl", "try-restart", unit], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        typer.echo(f"warning: could not restart {unit}: {exc}", err=True)
        return
    if done.returncode != 0:
        typer.echo(f"warning: systemctl try-restart {unit}: {done.stderr.strip()}", err=True)


@app.command()
def selftest(
    config: ConfigOpt = Path("/etc/jaga/agent.toml"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for the broker")] = 8.0,
) -> None:
    """Check config, key, certificate, broker, every pin, clock and disk; exit 1 on a failure."""
    from agent.selftest import render, run_checks

    checks = run_checks(config, broker_timeout_s=timeout)
    typer.echo(render(checks))
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command("check-config")
def check_config(config: ConfigOpt = Path("/etc/jaga/agent.toml")) -> None:
    """Validate agent.toml and print what the unit will do."""
    cfg = _load(config)
    typer.echo(
        f"{config}: ok — unit {cfg.site}/{cfg.device}, broker {cfg.broker.host}:"
        f"{cfg.broker.port} ({'mutual TLS' if cfg.broker.tls else 'no TLS'})"
    )
    for s in cfg.sensors:
        typer.echo(f"  {s.kind:<7} {s.name:<20} GPIO{s.pin}")


def main() -> None:
    app()
