"""`jaga-collector arm` and `disarm`: an operator's order to a site, signed with their
certificate and sent through the collector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from broker.cli.shared import DEFAULT_CONFIG, ByOpt, ConfigOpt, fail, load


def _arming(site: str, by: str, config: Path, name: Literal["arm", "disarm"]) -> None:
    from broker.operator import OperatorError, send

    cfg = load(config)
    try:
        state = send(cfg, site, name, by)
    except (OperatorError, ValueError) as exc:
        raise fail(str(exc)) from None
    if state is None:
        typer.echo(f"{name} sent for {site}; the collector did not answer yet (is it running?)")
        return
    typer.echo(f"{site}: {state.state.value} (by {state.by}, {state.how.value})")


def arm(
    site: Annotated[str, typer.Argument(help="site id")],
    by: ByOpt,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Arm a site now (after its exit delay); recorded with who did it."""
    _arming(site, by, config, "arm")


def disarm(
    site: Annotated[str, typer.Argument(help="site id")],
    by: ByOpt,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Disarm a site now; recorded with who did it."""
    _arming(site, by, config, "disarm")
