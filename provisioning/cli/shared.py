"""What every jaga-provision command shares: the --dir option and the registry it names,
and a technician's mistake said in one line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from kernel.config import ConfigError
from protocol.ids import InvalidIdentifier
from provisioning.errors import ProvisioningError
from provisioning.registry import Registry

P = ParamSpec("P")
T = TypeVar("T")

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Provisioning folder (the registry); default: the --dir given before the "
        "command, $JAGA_PROVISION_DIR, or ./jaga-provision.",
        show_default=False,
    ),
]
DEFAULT_DIR = Path("jaga-provision")


def reports_mistakes(func: Callable[P, T]) -> Callable[P, T]:
    """Turn a technician's mistake into one line on stderr and exit status 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except (ProvisioningError, InvalidIdentifier, ConfigError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def open_registry(ctx: typer.Context, dir: Path | None) -> Registry:
    """The registry named after the command, else before it, else by env or default."""
    chosen = dir or ctx.obj
    return Registry(chosen if isinstance(chosen, Path) else DEFAULT_DIR)


def existing_registry(ctx: typer.Context, dir: Path | None) -> Registry:
    """A registry that must already exist (listing commands): say so when it does not."""
    registry = open_registry(ctx, dir)
    if not registry.ca_cert_path.is_file():
        raise ProvisioningError(
            f"no registry in {registry.root}: start one with `jaga-provision ca init`, or "
            "point --dir (or JAGA_PROVISION_DIR) at the provisioning folder"
        )
    return registry


def say(message: str) -> None:
    typer.echo(message)
