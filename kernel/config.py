"""Strict config models, and their mistakes told one line each, naming the field and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """A config section: an unknown field is a mistake (a typo), never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientTls(Strict):
    """Mutual TLS to the broker: the site CA, and this client's own certificate and key."""

    ca: Path = Field(description="site CA certificate (PEM)")
    cert: Path = Field(
        description="this client's certificate (PEM) from the site CA: the unit's, or the "
        "collector's (CN collector:<name>)"
    )
    key: Path = Field(description="this client's private key (PEM, mode 0600)")
    crl: Path | None = Field(default=None, description="not used by clients; the broker checks")


class ConfigError(Exception):
    """A config file a person must fix; the message names the file, the field and the fix."""


def load_toml_model(path: Path, model: type[M]) -> M:
    """Read a TOML file into `model`; every way it can be wrong is a ConfigError saying how."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_errors(path, exc)) from None


def describe_errors(source: Path | str, exc: ValidationError) -> str:
    """Format a pydantic error as `source: N problem(s):` and one `- field: message` per line."""
    lines = [f"{source}: {exc.error_count()} problem(s):"]
    for err in exc.errors(include_url=False):
        where = "".join(_loc(p, i) for i, p in enumerate(err["loc"])) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the README for the fields)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"  - {where}: {msg}")
    return "\n".join(lines)


def _loc(part: int | str, index: int) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    return part if index == 0 else f".{part}"
