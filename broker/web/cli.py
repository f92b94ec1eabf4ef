"""`jaga-collector web ...`: helpers for the guard-post page's accounts."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from broker.web.passwords import hash_password

web_app = typer.Typer(help="The guard-post page: accounts.", no_args_is_help=True)


@web_app.callback()
def _web() -> None:
    """The guard-post page served by `jaga-collector run` when collector.toml has [web]."""


@web_app.command("hash-password")
def hash_password_cmd(
    name: Annotated[str, typer.Option(help="the account's login name, for the TOML snippet")] = "",
    stdin: Annotated[
        bool, typer.Option("--stdin", help="read the password from standard input (scripts)")
    ] = False,
) -> None:
    """Print an argon2 hash of a password for a web.accounts entry of collector.toml."""
    if stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        typer.echo("jaga-collector: use at least 8 characters", err=True)
        raise typer.Exit(2)
    hashed = hash_password(password)
    if name:
        typer.echo("[[web.accounts]]")
        typer.echo(f'name = "{name}"')
        typer.echo('role = "guard"            # or "operator"')
        typer.echo('sites = ["<site-id>"]     # operators: ["*"]')
        typer.echo(f'password_hash = "{hashed}"')
    else:
        typer.echo(hashed)
