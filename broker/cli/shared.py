"""What every jaga-collector command shares: the --config and --by options, the config and
key store they lead to, and a mistake said in one line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from broker.config import CollectorConfig, load_config
from kernel.config import ConfigError

if TYPE_CHECKING:
    from broker.keys import KeyStore

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="collector.toml", envvar="JAGA_COLLECTOR_CONFIG"),
]
DEFAULT_CONFIG = Path("/etc/jaga/collector.toml")
ByOpt = Annotated[str, typer.Option("--by", help="operator name (their certificate signs it)")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr; raise what it returns to exit with `code`."""
    typer.echo(f"jaga-collector: {message}", err=True)
    return typer.Exit(code)


def load(path: Path) -> CollectorConfig:
    """The collector's config, or exit 2 naming what is wrong in it."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def key_store(config: CollectorConfig) -> KeyStore:
    """The units' keys from the registry, once the registry and its sites are there."""
    from broker.keys import KeyStore

    if not config.registry_dir.is_dir():
        raise fail(f"registry_dir {config.registry_dir} does not exist (the provisioning dir)")
    # A misspelt site would be a subscription that never delivers: nothing stored, no error.
    known = {p.stem for p in (config.registry_dir / "sites").glob("*.toml")}
    unknown = sorted(set(config.mqtt.sites) - known)
    if unknown:
        raise fail(
            f"mqtt.sites names {', '.join(unknown)}, not a site of the registry "
            f"{config.registry_dir} (it has: {', '.join(sorted(known)) or 'none'})"
        )
    return KeyStore(config.registry_dir)
