"""The devstack launchers start, serve, fail clearly and always clean up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from devstack.forwarder import V2WriteForwarder
from devstack.influx import InfluxDB, QueryError
from devstack.mosquitto import Mosquitto, plain_config
from devstack.ports import free_port
from devstack.process import ManagedProcess, StartError
from devstack.victoria import VictoriaMetrics

REPO = Path(__file__).resolve().parents[2]
LINE = "door,site=s1,device=d1 open=1i,seq=7i 1700000000123456789"


class Shell(ManagedProcess):
    """A shell script that is ready once it has created the file ``ready``."""

    def __init__(self, workdir: Path, script: str) -> None:
        super().__init__("shell", workdir / "shell.log", cwd=workdir)
        self.script = script
        self.ready_file = workdir / "ready"

    def command(self) -> list[str]:
        return ["sh", "-c", self.script]

    def prepare(self) -> None:
        self.ready_file.unlink(missing_ok=True)

    def is_ready(self) -> bool:
        return self.ready_file.exists()


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_state(pid: int, stopped: bool) -> bool:
    deadline = time.monotonic() + 5
    while (proc_state(pid) == "T") != stopped:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- ports and processes ----------------------------------------------------------------
def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 1024 < port < 65536


def test_process_that_exits_raises_start_error_with_log_tail(tmp_path: Path) -> None:
    proc = Shell(tmp_path, "echo 'bad config line 3' >&2; exit 3")
    with pytest.raises(StartError, match=r"(?s)exited with code 3.*bad config line 3"):
        proc.start(timeout=5)
    assert not proc.running


def test_process_never_ready_is_killed_after_timeout(tmp_path: Path) -> None:
    proc = Shell(tmp_path, "echo still starting; exec sleep 60")
    t0 = time.monotonic()
    with pytest.raises(StartError, match=r"(?s)not ready after 0.3s.*still starting"):
        proc.start(timeout=0.3)
    assert time.monotonic() - t0 < 5
    assert not proc.running
    assert not alive(proc.pid)


def test_stop_terminates_and_reaps_in_own_session(tmp_path: Path) -> None:
    with Shell(tmp_path, "touch ready; exec sleep 60") as proc:
        pid = proc.pid
        assert os.getsid(pid) == pid != os.getsid(0)
    assert proc.returncode == -15
    assert not alive(pid)


def test_stop_escalates_to_sigkill_when_term_is_ignored(tmp_path: Path) -> None:
    proc = Shell(tmp_path, "trap '' TERM; touch ready; while :; do sleep 0.05; done").start()
    t0 = time.monotonic()
    assert proc.stop(grace=0.3) == -9
    assert 0.3 <= time.monotonic() - t0 < 5


def test_pause_resume_kill_restart(tmp_path: Path) -> None:
    proc = Shell(tmp_path, "touch ready; exec sleep 60").start()
    try:
        proc.pause()
        assert wait_state(proc.pid, stopped=True)
        proc.resume()
        assert wait_state(proc.pid, stopped=False)
        first = proc.pid
        proc.pause()
        assert wait_state(proc.pid, stopped=True)
        assert proc.stop(grace=5) == -15  # a paused process still stops on SIGTERM
        proc.restart(timeout=5)
        assert proc.running and proc.pid != first
        assert proc.kill() == -9
    finally:
        proc.stop()


def test_children_do_not_outlive_the_python_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from devstack.process import ManagedProcess

        class Sleep(ManagedProcess):
            def command(self) -> list[str]:
                return ["sleep", "60"]
            def is_ready(self) -> bool:
                return True

        print(Sleep("sleep", Path({str(tmp_path)!r}) / "log").start().pid)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    pid = int(out.stdout)
    assert not alive(pid)


# -- Mosquitto ----------------------------------------------------------------------------
@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(plain_config(port, tmp_path))
    with Mosquitto(config, port, tmp_path) as broker:
        yield broker


def mqtt_args(tool: str, broker: Mosquitto) -> list[str]:
    return [tool, "-h", "127.0.0.1", "-p", str(broker.port)]


def sub_one(broker: Mosquitto, topic: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*mqtt_args("mosquitto_sub", broker), "-t", topic, "-v", "-C", "1", "-W", "10", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )


def pub(broker: Mosquitto, topic: str, message: str, *extra: str) -> None:
    subprocess.run(
        [*mqtt_args("mosquitto_pub", broker), "-t", topic, "-m", message, "-q", "1", *extra],
        check=True,
        timeout=10,
    )


@pytest.mark.integration
def test_mosquitto_pub_sub(mosquitto: Mosquitto) -> None:
    sub = sub_one(mosquitto, "jaga/v1/#", "-q", "1")
    try:
        while sub.poll() is None:  # publish until the subscriber has subscribed and got one
            pub(mosquitto, "jaga/v1/s1/d1/event", "hello")
            time.sleep(0.1)
        assert sub.stdout is not None
        assert sub.stdout.read() == "jaga/v1/s1/d1/event hello\n"
        assert sub.returncode == 0
    finally:
        sub.kill()
        sub.wait()


@pytest.mark.integration
def test_mosquitto_persists_retained_across_restart_and_reloads(mosquitto: Mosquitto) -> None:
    pub(mosquitto, "jaga/v1/s1/d1/status", "online", "-r")
    first = mosquitto.pid
    mosquitto.restart()
    assert mosquitto.pid != first
    assert (mosquitto.workdir / "mosquitto.db").exists()
    sub = sub_one(mosquitto, "jaga/v1/s1/d1/status")
    out, _ = sub.communicate(timeout=15)
    assert out == "jaga/v1/s1/d1/status online\n"

    before = mosquitto.pid
    mosquitto.reload()
    deadline = time.monotonic() + 5
    while "Reloading config" not in mosquitto.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Reloading config" in mosquitto.log_tail()
    assert mosquitto.running and mosquitto.pid == before


@pytest.mark.integration
def test_mosquitto_bad_config_fails_with_its_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.conf"
    config.write_text("user root\nlistener 1883 127.0.0.1\nno_such_option 1\n")
    with pytest.raises(StartError, match="no_such_option"):
        Mosquitto(config, free_port(), tmp_path).start(timeout=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root is switched to user mosquitto")
def test_mosquitto_as_root_needs_a_user_line(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "m.conf"
    config.write_text(plain_config(port, tmp_path).replace("user root\n", ""))
    with pytest.raises(StartError, match="user root"):
        Mosquitto(config, port, tmp_path).start(timeout=10)


# -- InfluxDB 1.6 and the /api/v2/write forwarder ----------------------------------------
@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxDB]:
    with InfluxDB(tmp_path / "influx") as server:
        server.create_database("jaga")
        yield server


def v2_write(
    url: str, record: str, bucket: str = "jaga/autogen", precision: str = "ns", gzip: bool = False
) -> None:
    with InfluxDBClient(url=url, token="x", org="jaga", enable_gzip=gzip) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        api.write(bucket=bucket, record=record, write_precision=precision)


@pytest.mark.integration
@pytest.mark.parametrize("gzip", [False, True])
def test_forwarder_writes_line_protocol_into_influxdb(influx: InfluxDB, gzip: bool) -> None:
    with V2WriteForwarder(influx.url) as fw:
        v2_write(fw.url, LINE, gzip=gzip)
        v2_write(fw.url, "door,site=s1,device=d2 open=0i,seq=1i 1700000001", "jaga", precision="s")
    rows = influx.query("SELECT * FROM door ORDER BY time", "jaga")
    assert rows == [
        {"time": 1700000000123456789, "device": "d1", "open": 1, "seq": 7, "site": "s1"},
        {"time": 1700000001000000000, "device": "d2", "open": 0, "seq": 1, "site": "s1"},
    ]
    assert influx.count("door", "jaga") == 2
    assert influx.count("door", "jaga", where="device = 'd2'", field="seq") == 1
    assert influx.count("nothing", "jaga") == 0


@pytest.mark.integration
def test_forwarder_passes_errors_through(influx: InfluxDB) -> None:
    with V2WriteForwarder(influx.url) as fw:
        with pytest.raises(ApiException) as missing:
            v2_write(fw.url, LINE, bucket="nodb/autogen")
        assert missing.value.status == 404
        assert "database not found" in missing.value.body
        with pytest.raises(ApiException) as bad:
            v2_write(fw.url, "door open")
        assert bad.value.status == 400
        assert "unable to parse" in bad.value.body
        with InfluxDBClient(url=fw.url, token="x", org="jaga") as client:
            assert client.ping()
        with urllib.request.urlopen(f"{fw.url}/health", timeout=5) as health:
            assert health.status == 200
            assert json.load(health)["status"] == "pass"


@pytest.mark.integration
def test_forwarder_passes_queries_and_can_say_it_is_1_8(influx: InfluxDB) -> None:
    """What scripts/install-server.sh asks of an InfluxDB 1.8: /ping's version, POST /query."""
    with V2WriteForwarder(influx.url, version="1.8-compatible") as fw:
        with urllib.request.urlopen(f"{fw.url}/ping", timeout=5) as ping:
            assert ping.headers["X-Influxdb-Version"] == "1.8-compatible"
        data = urllib.parse.urlencode({"q": 'CREATE DATABASE "made_here"'}).encode()
        with urllib.request.urlopen(f"{fw.url}/query", data, timeout=5) as made:
            assert made.status == 200
    assert "made_here" in [r["name"] for r in influx.query("SHOW DATABASES")]
    with V2WriteForwarder(influx.url) as plain, urllib.request.urlopen(f"{plain.url}/ping") as ping:
        assert ping.headers["X-Influxdb-Version"].startswith("1.6")


@pytest.mark.integration
def test_forwarder_answers_503_when_influxdb_is_down_or_hung(influx: InfluxDB) -> None:
    with V2WriteForwarder(influx.url, timeout=0.5) as fw:
        influx.pause()
        try:
            with pytest.raises(ApiException) as hung:
                v2_write(fw.url, LINE)
            assert hung.value.status == 503
            assert '"code": "unavailable"' in hung.value.body
        finally:
            influx.resume()
        influx.stop()
        with pytest.raises(ApiException) as down:
            v2_write(fw.url, LINE)
        assert down.value.status == 503
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(f"{fw.url}/health", timeout=5)
        assert health.value.code == 503
        influx.start()  # same ports, same data dir
        v2_write(fw.url, LINE)
        assert influx.count("door", "jaga") == 1


@pytest.mark.integration
def test_influx_query_errors_and_database_lifecycle(influx: InfluxDB) -> None:
    with pytest.raises(QueryError, match="error parsing query"):
        influx.query("SELEKT 1", "jaga")
    with pytest.raises(QueryError, match="database not found"):
        influx.query("SELECT * FROM door", "absent")
    influx.create_database('odd "name"')
    names = {row["name"] for row in influx.query("SHOW DATABASES")}
    assert {"jaga", 'odd "name"'} <= names
    influx.drop_database('odd "name"')
    assert 'odd "name"' not in {row["name"] for row in influx.query("SHOW DATABASES")}


# -- VictoriaMetrics ----------------------------------------------------------------------
@pytest.mark.integration
def test_victoria_metrics_takes_v2_writes_as_measurement_field(tmp_path: Path) -> None:
    with VictoriaMetrics(tmp_path) as vm:
        v2_write(vm.url, LINE + '\ndoor,site=s1,device=d1 note="x",ok=true 1700000000200000000')
        series = {s["metric"]["__name__"]: s for s in vm.export('{__name__=~"door_.*"}')}
    assert sorted(series) == ["door_note", "door_ok", "door_open", "door_seq"]
    assert series["door_seq"]["metric"] == {"__name__": "door_seq", "site": "s1", "device": "d1"}
    assert series["door_seq"]["values"] == [7]
    assert series["door_seq"]["timestamps"] == [1700000000123]  # cut to ms
    assert series["door_ok"]["values"] == [1]
    assert series["door_note"]["values"] == [0]  # string text is lost
