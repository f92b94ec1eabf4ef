"""How validation errors are told to people: one line per mistake, naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


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
