"""`jaga-collector arm`, `disarm`, `bypass` and `unbypass`: an operator's order to a site (or
one of its zones, or one sensor), signed with their certificate and sent through the collector;
`trail`, who armed, disarmed and bypassed what; and `pin-hash`, a person's disarm or duress
PIN for [alerts.people]."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from broker.cli.shared import DEFAULT_CONFIG, ByOpt, ConfigOpt, fail, load
from broker.config import CollectorConfig
from protocol.alerting import ArmingState
from protocol.ids import InvalidIdentifier, check_id

ZoneOpt = Annotated[
    str | None, typer.Option("--zone", help="one zone of the site (default: every zone)")
]
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?:in)?)?(?:(\d+)s)?$")


def duration_s(text: str) -> int:
    """'2h', '90m', '1h30m', '45s' as seconds; ValueError naming the form otherwise."""
    found = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or found is None or not any(found.groups()):
        raise ValueError(f"--for {text!r} is not a duration: write e.g. 2h, 90m or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def _send(
    site: str,
    by: str,
    config: Path,
    name: Literal["arm", "disarm", "bypass", "unbypass"],
    **fields: Any,
) -> None:
    from broker.operator import OperatorError, send

    cfg = load(config)
    _check(cfg, site, fields)
    try:
        state = send(cfg, site, name, by, **fields)
    except (OperatorError, ValueError) as exc:
        raise fail(str(exc)) from None
    if state is None:
        typer.echo(
            f"{name} sent for {site}; no change seen yet (refused? the collector's log says "
            "why; is it running?)"
        )
        return
    typer.echo(describe(state, fields.get("zone")))


def _check(cfg: CollectorConfig, site: str, fields: dict[str, Any]) -> None:
    """What the collector would refuse, said here in one line (it only logs a refusal)."""
    alerts = cfg.alerts.site(site)
    zone = fields.get("zone")
    if zone is not None and zone not in alerts.zone_names():
        raise fail(
            f"site {site} has no zone {zone!r} (its zones: {', '.join(alerts.zone_names())})"
        )
    for_s = fields.get("for_s")
    if for_s is not None and for_s > alerts.bypass_max_min * 60:
        raise fail(f"a bypass at {site} lasts at most {alerts.bypass_max_min} min (bypass_max_min)")
    try:
        check_id(site, "site")
        if "device" in fields:
            check_id(fields["device"], "device")
            check_id(fields["sensor"], "sensor", allow_reserved=True)
    except InvalidIdentifier as exc:
        raise fail(str(exc)) from None


def describe(state: ArmingState, zone: str | None = None) -> str:
    """The site's arming as one line per zone (or the zone asked about), with its bypasses."""
    zones = [z for z in state.zones or () if zone is None or z.zone == zone]
    if not zones:
        return f"{state.site}: {state.state.value} (by {state.by}, {state.how.value})"
    lines = []
    for z in zones:
        line = f"{state.site}/{z.zone}: {z.state.value} (by {z.by}, {z.how.value})"
        if z.disarm_request is not None:
            until = _clock(z.disarm_request.until)
            line += f"; {z.disarm_request.by} asked to disarm, a second operator must by {until}"
        lines.append(line)
    for b in state.bypassed or ():
        if zone is None or b.zone == zone:
            lines.append(
                f"  bypassed {b.device}/{b.sensor} until {_clock(b.until)} by {b.by}: {b.reason}"
            )
    return "\n".join(lines)


def _clock(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%H:%M:%S")


def arm(
    site: Annotated[str, typer.Argument(help="site id")],
    by: ByOpt,
    zone: ZoneOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Arm a site or one zone now (after its exit delay); recorded with who did it."""
    _send(site, by, config, "arm", zone=zone)


def disarm(
    site: Annotated[str, typer.Argument(help="site id")],
    by: ByOpt,
    zone: ZoneOpt = None,
    code: Annotated[
        str | None,
        typer.Option("--code", help="your PIN, if your account has one", envvar="JAGA_PIN"),
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Disarm a site or one zone now; recorded with who did it (a two-person zone waits for a
    second, different operator within 60 s)."""
    _send(site, by, config, "disarm", zone=zone, code=code)


def bypass(
    site: Annotated[str, typer.Argument(help="site id")],
    sensor: Annotated[str, typer.Argument(help="device/sensor, e.g. gudang-01/pintu")],
    for_: Annotated[str, typer.Option("--for", help="how long: 2h, 90m, 1h30m")],
    reason: Annotated[str, typer.Option("--reason", help="why (what is broken, who fixes it)")],
    by: ByOpt,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Bypass one sensor for a while: its openings raise no alarm (still stored and shown);
    it ends at its deadline, when its zone is disarmed, or when lifted (`unbypass`)."""
    device, name = _sensor(sensor)
    try:
        seconds = duration_s(for_)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not reason.strip():
        raise fail("--reason must say why (what is broken, who fixes it)")
    _send(site, by, config, "bypass", device=device, sensor=name, for_s=seconds, reason=reason)


def unbypass(
    site: Annotated[str, typer.Argument(help="site id")],
    sensor: Annotated[str, typer.Argument(help="device/sensor, e.g. gudang-01/pintu")],
    by: ByOpt,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Lift a sensor's bypass now (it was repaired): its next opening while its zone is
    armed alarms again; recorded with who lifted it."""
    device, name = _sensor(sensor)
    _send(site, by, config, "unbypass", device=device, sensor=name)


def _sensor(text: str) -> tuple[str, str]:
    device, sep, name = text.partition("/")
    if not sep or not device or not name:
        raise fail(f"{text!r} is not device/sensor: write e.g. gudang-01/pintu")
    return device, name


def pin_hash(
    name: Annotated[str, typer.Option("--name", help="their login or certificate name")],
    duress: Annotated[
        bool, typer.Option("--duress", help="their duress PIN (disarms, tells the police)")
    ] = False,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="read the PIN from standard input")
    ] = False,
) -> None:
    """Print an argon2 hash of a disarm or duress PIN: the person's alerts.people entry of
    collector.toml (the PIN itself is kept nowhere)."""
    from broker.web.passwords import hash_password

    if stdin:
        pin = sys.stdin.readline().rstrip("\n")
    else:
        pin = typer.prompt("PIN", hide_input=True, confirmation_prompt=True)
    if not re.fullmatch(r"\d{4,12}", pin):
        raise fail("a PIN is 4 to 12 digits")
    field = "duress_pin_hash" if duress else "pin_hash"
    typer.echo(f"[alerts.people.{name}]")
    typer.echo(f'{field} = "{hash_password(pin)}"')


def trail(
    site: Annotated[str | None, typer.Option(help="only this site")] = None,
    since: Annotated[str, typer.Option(help="how far back: 24h, 90m, 7d is 168h")] = "24h",
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """The audit trail: every arming change, bypass and two-person request, with who did it."""
    import sqlite3
    import time

    from broker.alerts.store import read_audits

    cfg = load(config)
    try:
        back = duration_s(since)
    except ValueError as exc:
        raise fail(str(exc).replace("--for", "--since")) from None
    path = cfg.data_dir / "alerts.sqlite3"
    try:
        records = read_audits(path, site=site, since=time.time_ns() - back * 10**9)
    except sqlite3.Error as exc:
        raise fail(f"cannot read the alert store {path}: {exc}") from None
    if not records:
        typer.echo("nothing in the audit trail in that time")
        return
    for a in records:
        when = dt.datetime.fromtimestamp(a.at / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        what = a.to_state.value if a.kind.value == "arming" else a.kind.value
        if a.device:
            what += f" {a.device}/{a.sensor}"
        who = f"{a.by} (after {a.with_by})" if a.with_by else a.by
        typer.echo(f"{when} {a.site}/{a.zone} {what} by {who}, {a.how.value}: {a.reason}")
