"""`jaga-collector`'s entry point: names the extra to install before the collector loads.

A unit's `pip install jaga` leaves the collector's libraries out (they are `jaga[collector]`),
and `broker.cli` imports them at once; so this module looks them up in jaga's own metadata
first, without importing any of them, and imports `broker.cli` only when they are there.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

EXTRA = "collector"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def missing(extra: str = EXTRA) -> list[str]:
    """Distributions `jaga[extra]` requires that are not installed.

    Empty when jaga itself is not installed (run from a checkout): nothing to compare with.
    """
    try:
        requires = metadata.requires("jaga") or []
    except metadata.PackageNotFoundError:
        return []
    wanted = re.compile(rf"""\bextra\s*==\s*["']{re.escape(extra)}["']""")
    absent = []
    for requirement in requires:
        spec, _, marker = requirement.partition(";")
        name = _NAME.match(spec.strip())
        if name is None or not wanted.search(marker):
            continue
        try:
            metadata.distribution(name.group())
        except metadata.PackageNotFoundError:
            absent.append(name.group())
    return absent


def main() -> None:
    """Run `jaga-collector`, or say in one line which extra to install (exit 2)."""
    absent = missing()
    if absent:
        print(
            f"jaga-collector: the collector's libraries are not installed ({', '.join(absent)}); "
            f"install them with: pip install 'jaga[{EXTRA}]' (from a checkout: "
            f"pip install '.[{EXTRA}]')",
            file=sys.stderr,
        )
        raise SystemExit(2)
    from broker.cli import main as cli

    cli()
