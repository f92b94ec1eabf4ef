"""A unit's `pip install jaga` leaves out the collector's libraries (the `collector` extra):
nothing a unit runs may import them, and `jaga-collector` without them says what to install."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COLLECTOR = PYPROJECT["project"]["optional-dependencies"]["collector"]
# Everything a unit's install carries that a unit or a technician runs: all but broker/ and
# devstack/.
UNIT_PACKAGES = ["agent", "protocol", "kernel", "service", "provisioning"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found, requirement
    return found.group()


def collector_modules() -> list[str]:
    """The top-level modules of the collector extra's distributions (all installed for tests)."""
    wanted = {canonical(distribution_name(r)) for r in COLLECTOR}
    by_dist: dict[str, set[str]] = {name: set() for name in wanted}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            if canonical(dist) in wanted:
                by_dist[canonical(dist)].add(module)
    assert all(by_dist.values()), f"not installed here, so not blocked: {by_dist}"
    return sorted(set().union(*by_dist.values()))


# Run in a fresh interpreter: the test process has imported the collector long before.
BLOCKED_IMPORTS = """
import importlib, json, pkgutil, sys

blocked = set(json.loads(sys.argv[1]))

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
failed = {}
for package in json.loads(sys.argv[2]):
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            failed[module.name] = repr(exc)
print(json.dumps(failed))
"""


def test_nothing_a_unit_runs_imports_a_library_of_the_collector_extra() -> None:
    blocked = collector_modules()
    assert {"influxdb_client", "apprise", "starlette", "argon2"} <= set(blocked)
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORTS, json.dumps(blocked), json.dumps(UNIT_PACKAGES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {}, "these need a collector library; a Pi has none"


# The installed metadata as setuptools writes it for this pyproject (the test's venv may
# predate it), with some of the collector's distributions not installed.
WITHOUT_EXTRA = """
import json, sys
from importlib import metadata

requires, absent = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
libraries = json.loads(sys.argv[3])
sys.argv = ["jaga-collector", "--help"]
found = metadata.distribution

def distribution(name):
    if name in absent:
        raise metadata.PackageNotFoundError(name)
    return found(name)

metadata.requires = lambda name: requires if name == "jaga" else []
metadata.distribution = distribution
from broker.entry import main

try:
    main()
finally:
    loaded = sorted(m for m in sys.modules if m == "broker.cli" or m.split(".")[0] in libraries)
    print(json.dumps(loaded))
"""


def metadata_requires() -> list[str]:
    core = PYPROJECT["project"]["dependencies"]
    return [*core, *(f'{r}; extra == "collector"' for r in COLLECTOR), 'lgpio>=0.2; extra == "pi"']


def test_jaga_collector_without_its_extra_says_which_to_install_in_one_line_and_exits_2() -> None:
    absent = ["influxdb-client", "argon2-cffi"]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_EXTRA,
            json.dumps(metadata_requires()),
            json.dumps(absent),
            json.dumps(collector_modules()),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("jaga-collector: ")
    assert "influxdb-client, argon2-cffi" in done.stderr
    assert "pip install 'jaga[collector]'" in done.stderr
    assert json.loads(done.stdout) == [], "checked before broker.cli or any library loads"


def test_jaga_collector_with_its_extra_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA, json.dumps(metadata_requires()), "[]", "[]"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: jaga-collector" in done.stdout and done.stderr == ""
    assert json.loads(done.stdout.splitlines()[-1]) == ["broker.cli"]


def test_the_console_script_is_the_entry_that_checks() -> None:
    assert PYPROJECT["project"]["scripts"]["jaga-collector"] == "broker.entry:main"
