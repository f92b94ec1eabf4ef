"""The systemd units: hardened enough, and the services speak sd_notify as the units expect.

The notify tests play systemd's part: they bind the AF_UNIX datagram socket, start the real
`jaga-agent` / `jaga-collector` with NOTIFY_SOCKET and WATCHDOG_USEC set, and read what arrives.
The main loop is hung with the documented JAGA_DEBUG_STALL_FILE hook (service/stall.py).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from broker.web.config import WebConfig
from devstack.ports import free_port
from devstack.process import ManagedProcess
from devstack.stack import SCENARIOS, AgentProcess, CollectorProcess, Stack
from service.stall import STALL_ENV
from service.watchdog import UNHEALTHY
from tests.support import eventually

pytestmark = pytest.mark.integration

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 2.0
WATCHDOG_USEC = "400000"  # pings every 0.2 s


# hardening ---------------------------------------------------------------------------------


def exposure(unit: Path, *extra: str) -> tuple[float, str, str]:
    assert ANALYZE, "systemd-analyze is missing: `make test` installs Debian's systemd package"
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", *extra, str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, f"no score in:\n{done.stdout}\n{done.stderr}"
    return float(found.group(1)), done.stdout, done.stderr


@pytest.mark.parametrize(
    "unit",
    [
        "jaga-agent.service",
        "jaga-collector.service",
        "jaga-witness.service",
        "jaga-agent-renew.service",
        "jaga-enrol.service",
        "jaga-broker-kick.service",
    ],
)
def test_each_unit_scores_two_or_lower_and_parses_cleanly(unit: str) -> None:
    score, report, warnings = exposure(SYSTEMD / unit)
    assert score <= MAX_EXPOSURE, report
    assert warnings == "", f"systemd did not understand part of {unit}:\n{warnings}"


@pytest.mark.parametrize(
    ("timer", "every"),
    [("jaga-agent-renew.timer", "OnUnitInactiveSec=6h"), ("jaga-broker-kick.timer", "30s")],
)
def test_the_lifecycle_timers_parse_and_start_their_service_on_time(
    timer: str, every: str, tmp_path: Path
) -> None:
    """The renewal looks every 6 hours on the unit, the kick runs every 30 s on the server."""
    assert ANALYZE
    units = tmp_path / "units"
    units.mkdir()
    for name in (timer, timer.replace(".timer", ".service")):
        text = (SYSTEMD / name).read_text()
        # verify resolves ExecStart=: point it at a program that exists here
        text = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.MULTILINE)
        (units / name).write_text(text)
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(units / timer)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    problems = [
        line for line in done.stderr.splitlines()
        if line.strip() and "not found" not in line and "mosquitto" not in line
    ]  # fmt: skip
    assert not problems, done.stderr
    assert every in (SYSTEMD / timer).read_text()
    assert "Persistent=true" in (SYSTEMD / "jaga-agent-renew.timer").read_text()


def test_the_renewal_restarts_the_agent_and_may_write_only_its_identity() -> None:
    unit = (SYSTEMD / "jaga-agent-renew.service").read_text()
    assert "--restart-unit jaga-agent.service" in unit
    assert re.findall(r"^ReadWritePaths=(.*)$", unit, flags=re.MULTILINE) == ["/etc/jaga"]
    assert re.findall(r"^CapabilityBoundingSet=(.*)$", unit, flags=re.MULTILINE) == ["CAP_CHOWN"]
    assert "TimeoutStartSec=infinity" in unit  # an endpoint outage is waited out


def test_the_score_is_read_from_the_unit_so_a_weakened_unit_fails(tmp_path: Path) -> None:
    text = (SYSTEMD / "jaga-collector.service").read_text()
    weak = re.sub(
        r"^(ProtectSystem|CapabilityBoundingSet|SystemCallFilter|PrivateUsers)=.*\n",
        "",
        text,
        flags=re.MULTILINE,
    )
    (tmp_path / "weak.service").write_text(weak)
    score, _, _ = exposure(tmp_path / "weak.service")
    assert score > MAX_EXPOSURE


def test_the_collector_has_descriptors_to_spare_beyond_what_the_page_may_hold() -> None:
    unit = (SYSTEMD / "jaga-collector.service").read_text()
    limits = re.findall(r"^LimitNOFILE=(\d+)$", unit, flags=re.MULTILINE)
    assert len(limits) == 1, "set LimitNOFILE= once (systemd's default soft limit is 1,024)"
    field = WebConfig.model_fields["max_connections"]
    highest = next(m.le for m in field.metadata if hasattr(m, "le"))
    assert int(limits[0]) >= 4 * highest  # even the page's highest cap leaves 3/4 to storage
    assert int(limits[0]) >= 32 * int(field.default)


def test_the_agent_unit_keeps_gpio_and_camera_reachable() -> None:
    unit = (SYSTEMD / "jaga-agent.service").read_text()
    settings = re.findall(r"^(\w+)=(.*)$", unit, flags=re.MULTILINE)
    allowed = {v.split()[0] for k, v in settings if k == "DeviceAllow"}
    assert {"char-gpiochip", "char-video4linux", "char-media", "char-dma_heap"} <= allowed
    assert ("SupplementaryGroups", "gpio video") in settings
    assert ("PrivateDevices", "no") in settings and ("DevicePolicy", "closed") in settings
    for exception in ("PrivateDevices=no", "PrivateUsers=", "ProcSubset=pid", "AF_NETLINK"):
        assert re.search(rf"Exception: [^\n]*{exception}", unit), f"{exception} undocumented"


def test_the_mosquitto_drop_in_is_read_with_debians_unit(tmp_path: Path) -> None:
    debian = Path("/lib/systemd/system/mosquitto.service")
    if not debian.is_file():
        pytest.skip("Debian's mosquitto package is not installed")
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    shutil.copy(debian, tmp_path / "lib/systemd/system")
    dropin = tmp_path / "etc/systemd/system/mosquitto.service.d"
    dropin.mkdir(parents=True)
    shutil.copy(SYSTEMD / "mosquitto.service.d" / "jaga.conf", dropin)
    _, report, warnings = exposure(Path("mosquitto.service"), f"--root={tmp_path}")
    assert warnings == ""
    assert re.search(r"✓ ProtectHome=", report)  # set only by the drop-in
    conf = (dropin / "jaga.conf").read_text()
    assert "ExecStart=\nExecStart=/usr/sbin/mosquitto -c /etc/mosquitto/jaga/mosquitto.conf" in conf


def test_the_grafana_drop_in_parses_and_names_the_provisioning_folder(tmp_path: Path) -> None:
    # A stand-in for Grafana's unit (Grafana is not a Debian package): the drop-in is read with it.
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system/grafana-server.service").write_text(
        "[Service]\nExecStart=/usr/sbin/grafana-server\n"
    )
    dropin = tmp_path / "etc/systemd/system/grafana-server.service.d"
    dropin.mkdir(parents=True)
    shutil.copy(SYSTEMD / "grafana-server.service.d" / "jaga.conf", dropin)
    _, _, warnings = exposure(Path("grafana-server.service"), f"--root={tmp_path}")
    assert warnings == ""
    text = (dropin / "jaga.conf").read_text()
    assert "Environment=GF_PATHS_PROVISIONING=/etc/grafana/provisioning" in text


# sd_notify -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    n: int
    text: str

    def lines(self) -> list[str]:
        return self.text.split("\n")


class FakeSystemd:
    """systemd's end of $NOTIFY_SOCKET: keeps every datagram, in arrival order."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="jaga-sd-"))  # AF_UNIX paths are short
        self.address = str(self.folder / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self._got: list[Message] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self._got.append(Message(len(self._got), data.decode()))

    def env(self, stall_file: Path) -> dict[str, str]:
        return dict(
            os.environ,
            NOTIFY_SOCKET=self.address,
            WATCHDOG_USEC=WATCHDOG_USEC,
            **{STALL_ENV: str(stall_file)},
        )

    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._got)

    def with_line(self, line: str, after: int = -1) -> list[Message]:
        return [m for m in self.messages() if m.n > after and line in m.lines()]

    def statuses(self, after: int = -1) -> list[Message]:
        return [m for m in self.messages() if m.n > after and m.text.startswith("STATUS=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd()
    yield fake
    fake.close()


STALLED = re.compile(r"stalled for (\d+) s")


def stall_and_recover(systemd: FakeSystemd, stall_file: Path, loop: str) -> None:
    """Hang the main loop: pings stop and STATUS says why; release it: pings come back."""
    before = systemd.messages()[-1].n
    stall_file.touch()
    first = eventually(
        lambda: (
            systemd.statuses(before)
            and [m for m in systemd.statuses(before) if m.text.startswith(f"STATUS={UNHEALTHY}")]
        ),
        timeout=30,
    )[0]
    assert f"{loop} stalled for" in first.text
    stalled_at = int(STALLED.findall(first.text)[0])
    # The service's own clock says three more seconds went by (15 ping periods), unhealthy.
    later = eventually(
        lambda: [
            m
            for m in systemd.statuses(first.n)
            if (s := STALLED.findall(m.text)) and int(s[0]) >= stalled_at + 3
        ],
        timeout=30,
    )[0]
    pings_while_stalled = [m for m in systemd.with_line("WATCHDOG=1", first.n) if m.n < later.n]
    assert pings_while_stalled == []
    stall_file.unlink()
    eventually(lambda: systemd.with_line("WATCHDOG=1", later.n), timeout=30)
    healed = eventually(
        lambda: [m for m in systemd.statuses(later.n) if UNHEALTHY not in m.text], timeout=30
    )
    assert healed


def started_then_pinging(systemd: FakeSystemd, status_says: str) -> Message:
    ready = eventually(lambda: systemd.with_line("READY=1"), timeout=30)[0]
    eventually(lambda: len(systemd.with_line("WATCHDOG=1", ready.n)) >= 3, timeout=30)
    assert systemd.with_line("WATCHDOG=1")[0].n > ready.n, "a ping came before READY=1"
    eventually(lambda: [m for m in systemd.statuses() if status_says in m.text], timeout=30)
    # Was a bug: the collector's watchdog judged before run() had started its spool thread.
    assert not [m.text for m in systemd.statuses() if UNHEALTHY in m.text]
    return ready


def stops_cleanly(systemd: FakeSystemd, process: ManagedProcess) -> None:
    assert process.stop() == 0
    stopping = systemd.with_line("STOPPING=1")
    assert len(stopping) == 1
    assert systemd.with_line("WATCHDOG=1", stopping[0].n) == []


def test_the_agent_is_ready_reports_status_and_pings_only_while_its_loop_turns(
    stack: Stack, systemd: FakeSystemd, tmp_path: Path
) -> None:
    stack.start_broker()
    unit = stack.unit_dir("gudang-01")
    agent = AgentProcess(unit / "agent.toml", SCENARIOS / "gudang-01.toml", unit / "agent.log")
    stall_file = tmp_path / "stall"
    agent.env = systemd.env(stall_file)
    agent.start(timeout=30)
    started_then_pinging(systemd, status_says=f"connected to 127.0.0.1:{stack.broker_port}")
    stall_and_recover(systemd, stall_file, "main loop")
    stops_cleanly(systemd, agent)


def test_an_offline_agent_is_ready_and_healthy(
    stack: Stack, systemd: FakeSystemd, tmp_path: Path
) -> None:
    # No broker: the unit works alone, so it is up and well, and says it is offline.
    unit = stack.unit_dir("gudang-02")
    agent = AgentProcess(
        unit / "agent.toml", SCENARIOS / "gudang-02.toml", unit / "agent.log", online=False
    )
    agent.env = systemd.env(tmp_path / "stall")
    agent.start(timeout=30)
    started_then_pinging(systemd, status_says="offline")
    agent.kill()  # a clean stop would wait for the outbox to drain first


def collector_toml(stack: Stack, root: Path) -> Path:
    ident = stack.registry / "identities"
    config = {
        "data_dir": str(root / "data"),
        "registry_dir": str(stack.registry),
        "mqtt": {
            "host": "127.0.0.1",
            "port": stack.broker_port,
            "client_id": "jaga-collector-notify",
            "tls": {
                "ca": str(stack.registry / "ca" / "ca.crt"),
                "cert": str(ident / "collector-main.crt"),
                "key": str(ident / "collector-main.key"),
            },
        },
        # Nothing is written in this test; the store is never asked.
        "influx": {"url": f"http://127.0.0.1:{free_port()}", "timeout_ms": 200},
    }
    path = root / "collector.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def test_the_collector_is_ready_once_subscribed_and_pings_only_while_its_loop_turns(
    stack: Stack, systemd: FakeSystemd, tmp_path: Path
) -> None:
    stack.start_broker()
    collector = CollectorProcess(collector_toml(stack, tmp_path), tmp_path / "collector.log")
    stall_file = tmp_path / "stall"
    collector.env = systemd.env(stall_file)
    collector.start(timeout=30)
    ready = started_then_pinging(systemd, status_says="connected to broker")
    assert "subscribed to" in collector.log_tail(200)
    assert f"connected to broker 127.0.0.1:{stack.broker_port}" in ready.text
    stall_and_recover(systemd, stall_file, "collector loop")
    stops_cleanly(systemd, collector)
