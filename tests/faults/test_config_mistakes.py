"""Config files with every kind of mistake, given to the real programs (jaga-agent,
jaga-collector, jaga-provision) as a technician would: each ends with a clear message that
names the file or the field, a non-zero exit status and no traceback.

The programs run concurrently (they are independent processes) so the module stays quick.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from devstack.ports import free_port
from devstack.stack import BIN

pytestmark = pytest.mark.faults

SITE, DEVICE = "bangka-barat", "gudang-01"
EXIT_WITHIN_S = 30.0
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@dataclass(frozen=True)
class Case:
    """One mistake: how to make it in a fresh folder, the command, and a word the error names."""

    name: str
    make: Callable[[Path, Path], list[str]]
    """(folder, registry) -> argv after the program name; writes whatever it needs."""
    names: str


@dataclass(frozen=True)
class Outcome:
    code: int | None
    output: str


def agent_config(folder: Path, registry: Path, **changes: Any) -> dict[str, Any]:
    unit = registry / "devices" / SITE / DEVICE
    config: dict[str, Any] = {
        "site": SITE,
        "device": DEVICE,
        "data_dir": str(folder / "data"),
        "pin_factory": "mock",
        "heartbeat_s": 10,
        "sensors": [
            {"name": "pintu-utama", "kind": "door", "pin": 17},
            {"name": "lorong", "kind": "motion", "pin": 27},
        ],
        "broker": {
            "host": "127.0.0.1",
            "port": free_port(),  # nothing listens: a good config would simply keep trying
            "keepalive_s": 15,
            "tls": {
                "ca": str(registry / "ca" / "ca.crt"),
                "cert": str(unit / "device.crt"),
                "key": str(unit / "device.key"),
            },
        },
    }
    for key, value in changes.items():
        where = config
        *parents, leaf = key.split(".")
        for p in parents:
            where = where[p]
        if value is DELETE:
            del where[leaf]
        else:
            where[leaf] = value
    return config


DELETE = object()


def agent(
    changes: dict[str, Any] | None = None, command: str = "run"
) -> Callable[[Path, Path], list[str]]:
    def make(folder: Path, registry: Path) -> list[str]:
        path = folder / "agent.toml"
        path.write_text(tomli_w.dumps(agent_config(folder, registry, **(changes or {}))))
        extra = ["--scenario", str(folder / "scenario.toml")] if command == "simulate" else []
        if command == "simulate":
            (folder / "scenario.toml").write_text("loop_s = 0\n")
        return ["jaga-agent", command, "--config", str(path), *extra]

    return make


def agent_text(text: bytes | str, command: str = "run") -> Callable[[Path, Path], list[str]]:
    def make(folder: Path, _registry: Path) -> list[str]:
        path = folder / "agent.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["jaga-agent", command, "--config", str(path)]

    return make


def agent_file(
    write: Callable[[Path, Path], None], changes: dict[str, Any] | None = None
) -> Callable[[Path, Path], list[str]]:
    """A good config whose files (key, cert, data_dir) write() spoils."""

    def make(folder: Path, registry: Path) -> list[str]:
        config = agent_config(folder, registry, **(changes or {}))
        write(folder, registry)
        path = folder / "agent.toml"
        path.write_text(tomli_w.dumps(config))
        return ["jaga-agent", "run", "--config", str(path)]

    return make


def scenario(text: str) -> Callable[[Path, Path], list[str]]:
    def make(folder: Path, registry: Path) -> list[str]:
        path = folder / "agent.toml"
        path.write_text(tomli_w.dumps(agent_config(folder, registry)))
        (folder / "scenario.toml").write_text(text)
        return [
            "jaga-agent",
            "simulate",
            "--config",
            str(path),
            "--scenario",
            str(folder / "scenario.toml"),
        ]

    return make


def collector_config(folder: Path, registry: Path, **changes: Any) -> dict[str, Any]:
    ident = registry / "identities"
    config: dict[str, Any] = {
        "data_dir": str(folder / "data"),
        "registry_dir": str(registry),
        "mqtt": {
            "host": "127.0.0.1",
            "port": free_port(),
            "tls": {
                "ca": str(registry / "ca" / "ca.crt"),
                "cert": str(ident / "collector-main.crt"),
                "key": str(ident / "collector-main.key"),
            },
        },
        "influx": {"url": f"http://127.0.0.1:{free_port()}", "bucket": "jaga/autogen"},
    }
    for key, value in changes.items():
        where = config
        *parents, leaf = key.split(".")
        for p in parents:
            where = where[p]
        if value is DELETE:
            del where[leaf]
        else:
            where[leaf] = value
    return config


def collector(
    changes: dict[str, Any] | None = None,
    *,
    prepare: Callable[[Path], None] | None = None,
    audit: bool = False,
) -> Callable[[Path, Path], list[str]]:
    def make(folder: Path, registry: Path) -> list[str]:
        if prepare is not None:
            prepare(folder)
        path = folder / "collector.toml"
        path.write_text(tomli_w.dumps(collector_config(folder, registry, **(changes or {}))))
        if audit:
            return ["jaga-collector", "audit", "verify", "--site", SITE, "--config", str(path)]
        return ["jaga-collector", "run", "--config", str(path)]

    return make


def collector_text(text: bytes | str) -> Callable[[Path, Path], list[str]]:
    def make(folder: Path, _registry: Path) -> list[str]:
        path = folder / "collector.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["jaga-collector", "run", "--config", str(path)]

    return make


def provision(spoil: Callable[[Path], None], *args: str) -> Callable[[Path, Path], list[str]]:
    """jaga-provision on a copy of the registry that spoil() has damaged."""

    def make(folder: Path, registry: Path) -> list[str]:
        copy = folder / "registry"
        shutil.copytree(registry, copy)
        spoil(copy)
        return ["jaga-provision", "--dir", str(copy), *args]

    return make


def write(rel: str, text: bytes | str) -> Callable[[Path], None]:
    def spoil(root: Path) -> None:
        (root / rel).write_bytes(text if isinstance(text, bytes) else text.encode())

    return spoil


def replace(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def spoil(root: Path) -> None:
        path = root / rel
        text = path.read_text()
        assert old in text, text
        path.write_text(text.replace(old, new))

    return spoil


def append(rel: str, text: str) -> Callable[[Path], None]:
    def spoil(root: Path) -> None:
        with (root / rel).open("a") as fh:
            fh.write(text)

    return spoil


def registry_is_a_file(folder: Path, _registry: Path) -> list[str]:
    (folder / "reg").write_text("not a folder\n")
    return ["jaga-provision", "--dir", str(folder / "reg"), "device", "list"]


def nothing(_root: Path) -> None:
    pass


def garbage_key(folder: Path, _registry: Path) -> None:
    (folder / "device.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")


def data_dir_is_a_file(folder: Path, _registry: Path) -> None:
    (folder / "data").write_text("I am a file, not a folder\n")


def no_file(_folder: Path, _registry: Path) -> None:
    pass


def a_file_as_data_dir(folder: Path) -> None:
    (folder / "data").write_text("not a folder\n")


CASES = [
    # jaga-agent: the file itself
    Case(
        "agent-no-such-file",
        lambda f, _r: ["jaga-agent", "run", "--config", str(f / "nope.toml")],
        "no such file",
    ),
    Case("agent-a-folder", lambda f, _r: ["jaga-agent", "run", "--config", str(f)], "cannot read"),
    Case("agent-empty-file", agent_text(""), "site"),
    Case("agent-not-toml", agent_text('site = "bangka-barat"\n[broker\n'), "not valid TOML"),
    Case("agent-not-utf8", agent_text(b'site = "\xff\xfe"\n'), "cannot read"),
    Case("agent-binary-junk", agent_text(bytes(range(256)) * 4), "agent.toml"),
    # jaga-agent: fields
    Case("agent-unknown-field", agent({"sitee": "x"}), "sitee"),
    Case("agent-misspelt-nested", agent({"broker.keepalive": 15}), "broker.keepalive"),
    Case("agent-missing-device", agent({"device": DELETE}), "device"),
    Case("agent-missing-broker", agent({"broker": DELETE}), "broker"),
    Case("agent-port-is-text", agent({"broker.port": "eighty"}), "broker.port"),
    Case("agent-port-too-big", agent({"broker.port": 70000}), "broker.port"),
    Case("agent-keepalive-too-short", agent({"broker.keepalive_s": 1}), "keepalive_s"),
    Case("agent-heartbeat-negative", agent({"heartbeat_s": -5}), "heartbeat_s"),
    Case("agent-site-with-spaces", agent({"site": "Bangka Barat"}), "site"),
    Case("agent-reserved-device", agent({"device": "cmd"}), "reserved"),
    Case("agent-unicode-device", agent({"device": "gudang-\u00e9"}), "device"),
    Case(
        "agent-pin-off-header",
        agent({"sensors": [{"name": "a", "kind": "door", "pin": 40}]}),
        "pin 40",
    ),
    Case(
        "agent-pin-twice",
        agent(
            {
                "sensors": [
                    {"name": "a", "kind": "door", "pin": 17},
                    {"name": "b", "kind": "door", "pin": 17},
                ]
            }
        ),
        "pin 17",
    ),
    Case("agent-no-sensors", agent({"sensors": []}), "sensors"),
    Case(
        "agent-sensor-kind",
        agent({"sensors": [{"name": "a", "kind": "laser", "pin": 17}]}),
        "kind",
    ),
    Case("agent-sensor-is-text", agent({"sensors": "pintu"}), "sensors"),
    Case("agent-pin-factory", agent({"pin_factory": "gpio9000"}), "pin_factory"),
    Case("agent-camera-kind", agent({"camera": {"kind": "webcam"}}), "camera"),
    # jaga-agent: files the config names
    Case("agent-key-missing", agent({"broker.tls.key": "/nonexistent/device.key"}), "device.key"),
    Case("agent-key-garbage", agent_file(garbage_key, {"broker.tls.key": "KEY"}), "key"),
    Case("agent-cert-missing", agent({"broker.tls.cert": "/nonexistent/device.crt"}), "device.crt"),
    Case("agent-ca-missing", agent({"broker.tls.ca": "/nonexistent/ca.crt"}), "ca.crt"),
    Case("agent-data-dir-is-a-file", agent_file(data_dir_is_a_file), "data"),
    # jaga-agent simulate: the scenario
    Case(
        "scenario-missing",
        lambda f, r: [*scenario("")(f, r)[:-1], str(f / "nope.toml")],
        "no such scenario",
    ),
    Case("scenario-not-toml", scenario("[[step]\n"), "not valid TOML"),
    Case(
        "scenario-unknown-sensor",
        scenario('[[step]]\nat = 1\nsensor = "laser"\naction = "open"\n'),
        "laser",
    ),
    Case(
        "scenario-bad-action",
        scenario('[[step]]\nat = 1\nsensor = "lorong"\naction = "explode"\n'),
        "action",
    ),
    Case(
        "scenario-loop-too-short",
        scenario('loop_s = 1\n[[step]]\nat = 5\nsensor = "pintu-utama"\naction = "open"\n'),
        "loop_s",
    ),
    # jaga-collector
    Case(
        "collector-no-such-file",
        lambda f, _r: ["jaga-collector", "run", "--config", str(f / "nope.toml")],
        "no such file",
    ),
    Case("collector-empty-file", collector_text(""), "registry_dir"),
    Case("collector-not-toml", collector_text("[mqtt\n"), "not valid TOML"),
    Case("collector-not-utf8", collector_text(b'registry_dir = "\xff"\n'), "cannot read"),
    Case("collector-unknown-field", collector({"influx.bukcet": "x"}), "influx.bukcet"),
    Case("collector-port-is-text", collector({"mqtt.port": "x"}), "mqtt.port"),
    Case("collector-spool-zero", collector({"spool_max_mb": 0}), "spool_max_mb"),
    Case("collector-batch-huge", collector({"influx.batch_max": 10**9}), "batch_max"),
    Case("collector-no-registry", collector({"registry_dir": "/nonexistent/registry"}), "registry"),
    Case("collector-cert-missing", collector({"mqtt.tls.cert": "/nonexistent/c.crt"}), "c.crt"),
    Case("collector-key-missing", collector({"mqtt.tls.key": "/nonexistent/c.key"}), "c.key"),
    Case("collector-data-dir-is-a-file", collector(prepare=a_file_as_data_dir), "data"),
    Case("collector-influx-url-garbage", collector({"influx.url": "not a url"}), "url"),
    Case("collector-site-misspelt", collector({"mqtt.sites": ["bangka-brat"]}), "bangka-brat"),
    Case("collector-site-wildcard", collector({"mqtt.sites": ["+"]}), "mqtt.sites"),
    Case("collector-audit-bad-config", collector({"mqtt.port": -1}, audit=True), "mqtt.port"),
    # jaga-provision: a damaged registry
    Case(
        "provision-site-not-toml",
        provision(write(f"sites/{SITE}.toml", "id = [\n"), "site", "list"),
        f"{SITE}.toml",
    ),
    Case(
        "provision-site-unknown-field",
        provision(append(f"sites/{SITE}.toml", 'colour = "red"\n'), "site", "list"),
        "colour",
    ),
    Case(
        "provision-site-bad-zone",
        provision(
            append(f"sites/{SITE}.toml", ""),
            "site",
            "add",
            "x-1",
            "--name",
            "X",
            "--timezone",
            "Mars/Olympus",
            "--broker-host",
            "h",
        ),
        "Mars/Olympus",
    ),
    Case(
        "provision-device-not-toml",
        provision(write(f"devices/{SITE}/{DEVICE}/device.toml", b"\xff\xfe"), "device", "list"),
        "device.toml",
    ),
    Case(
        "provision-device-bad-pin",
        provision(
            replace(f"devices/{SITE}/{DEVICE}/device.toml", "pin = 17", "pin = 99"),
            "device",
            "list",
        ),
        "pin 99",
    ),
    Case(
        "provision-device-sensors-twice",
        provision(
            append(f"devices/{SITE}/{DEVICE}/device.toml", '[[sensors]]\nname = "x"\n'),
            "device",
            "list",
        ),
        "device.toml",
    ),
    Case(
        "provision-ca-log-not-toml",
        provision(
            write("ca/ca.toml", "next_serial = \n"),
            "identity",
            "add",
            "operator",
            "budi",
            "--all-sites",
        ),
        "ca.toml",
    ),
    Case(
        "provision-ca-key-garbage",
        provision(
            write("ca/ca.key", "not a key"), "identity", "add", "operator", "budi", "--all-sites"
        ),
        "ca.key",
    ),
    Case(
        "provision-ca-cert-garbage",
        provision(
            write("ca/ca.crt", "not a cert"), "broker-config", "--out", "/tmp/jaga-test-unused"
        ),
        "ca.crt",
    ),
    Case("provision-crl-days-zero", provision(nothing, "crl", "refresh", "--days", "0"), "days"),
    Case("provision-port-too-big", provision(nothing, "broker-config", "--port", "70000"), "port"),
    Case(
        "provision-dir-is-a-file",
        registry_is_a_file,
        "reg",
    ),
    Case(
        "provision-dir-missing",
        lambda f, _r: ["jaga-provision", "--dir", str(f / "nope"), "site", "list"],
        "nope",
    ),
]


BUGS: dict[str, str] = {}
RUNS_ON: set[str] = set()
"""Mistakes the program does not notice (yet): it runs until EXIT_WITHIN_S stops it."""
PARAMS = [
    pytest.param(
        c,
        id=c.name,
        marks=[pytest.mark.xfail(reason=BUGS[c.name], strict=True)] if c.name in BUGS else [],
    )
    for c in CASES
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("config-mistakes")

    def run(case: Case) -> tuple[str, Outcome]:
        folder = root / case.name
        folder.mkdir()
        argv = case.make(folder, registry)
        cmd = [str(BIN / argv[0]), *argv[1:]]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=EXIT_WITHIN_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout
            return case.name, Outcome(None, f"still running after {EXIT_WITHIN_S}s: {out}")
        return case.name, Outcome(done.returncode, done.stdout + done.stderr)

    # A case that runs until it is stopped goes first, alongside the quick ones.
    slow_first = sorted(CASES, key=lambda c: c.name not in RUNS_ON)
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, slow_first))


@pytest.mark.parametrize("case", PARAMS)
def test_a_config_mistake_is_a_clear_message_and_a_failure_exit(
    outcomes: dict[str, Outcome], case: Case
) -> None:
    got = outcomes[case.name]
    assert got.code is not None, got.output[-2000:]
    assert "Traceback" not in got.output, got.output[-3000:]
    assert got.code != 0, got.output[-2000:]
    # The program's own message names it (a log line above it does not count).
    message = "\n".join(ln for ln in got.output.splitlines() if not LOG_LINE.match(ln))
    assert case.names.lower() in message.lower(), f"the message does not name it: {got.output}"
    assert len(got.output.strip().splitlines()) <= 25, got.output[-2000:]
