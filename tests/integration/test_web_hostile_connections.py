"""Issue 14, findings 7 and 19: plain TCP to the guard post's page must not starve storage.

1,100 idle connections once took all 1,024 file descriptors of the collector's process, and
evidence writes, SQLite and the InfluxDB socket failed. Here the page is served for real on
loopback (in a child process with a low descriptor limit where descriptors are the point) and
attacked with idle, dawdling and TLS-silent connections from 127.0.0.x source addresses.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.web.config import WebConfig
from broker.web.passwords import hash_password
from broker.web.server import WebServer, serve
from broker.web.state import LiveState
from protocol.models import Status

ROOT = Path(__file__).resolve().parents[2]
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
ACCOUNT = {
    "name": "budi",
    "role": "guard",
    "sites": ["bangka-barat"],
    "password_hash": hash_password("jaga-malam-17", CHEAP),
}

SERVER = """
import os, resource, sqlite3, sys
from pathlib import Path
from broker.web.config import WebConfig
from broker.web.server import serve
from broker.web.state import LiveState

limit, data = int(sys.argv[1]), Path(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
web = serve(LiveState(), WebConfig.model_validate_json(sys.argv[3]), data_dir=data)
print(web.port, flush=True)
for n, line in enumerate(sys.stdin):
    if line.strip() == "fds":
        try:
            print(len(os.listdir("/proc/self/fd")), flush=True)
        except OSError as exc:
            print(f"failed: {exc}", flush=True)
    elif line.strip() == "store":  # what the collector does with an event and its picture
        try:
            db = sqlite3.connect(data / "store.sqlite")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS event (n INTEGER)")
            with db:
                db.execute("INSERT INTO event VALUES (?)", (n,))
            with open(data / f"picture-{n}.jpg", "wb") as f:
                f.write(b"jpeg" * 1000)
                os.fsync(f.fileno())
            db.close()
            print("stored", flush=True)
        except (OSError, sqlite3.Error) as exc:
            print(f"failed: {exc}", flush=True)
    else:
        break
web.stop()
"""


def web_config(**kw: object) -> WebConfig:
    return WebConfig.model_validate({"bind": "127.0.0.1:0", "accounts": [ACCOUNT]} | kw)


class Child:
    """The page in its own process, as the collector runs it, with `limit` descriptors."""

    def __init__(self, tmp: Path, limit: int, config: WebConfig) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(limit), str(tmp), config.model_dump_json()],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.ask(""))

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def fds(self) -> int:
        answer = self.ask("fds")
        assert answer.isdigit(), f"the page's process cannot even list its descriptors: {answer}"
        return int(answer)

    def settle(self) -> int | None:
        """The descriptor count once the server has taken what it will of a burst; None when
        none is left even to count them."""
        last, same = -1, 0
        deadline = time.monotonic() + 10
        while same < 3 and time.monotonic() < deadline:
            answer = self.ask("fds")
            if not answer.isdigit():
                return None
            same = same + 1 if int(answer) == last else 0
            last = int(answer)
            time.sleep(0.1)
        return last

    def stop(self) -> None:
        self.ask("quit")
        self.proc.wait(10)


def idle(port: int, source: str) -> socket.socket:
    """A connection that never sends a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def ended(sock: socket.socket) -> bool:
    """The server has closed (or reset) this connection."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def all_end(socks: list[socket.socket], within_s: float) -> list[socket.socket]:
    """Those still open after within_s."""
    deadline = time.monotonic() + within_s
    left = list(socks)
    while left and time.monotonic() < deadline:
        left = [s for s in left if not ended(s)]
        time.sleep(0.05)
    return left


def get(port: int, path: str = "/login", source: str = "127.0.0.2") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def test_idle_connections_cannot_take_the_descriptors_storage_needs(
    tmp_path: Path, sockets: list[socket.socket]
) -> None:
    cfg = web_config(max_connections=32, max_connections_per_address=8, request_timeout_s=1.5)
    child = Child(tmp_path, limit=200, config=cfg)
    try:
        baseline = child.fds()
        assert get(child.port) == 200
        for i in range(300):  # more than the child's 200 descriptors, from ten addresses
            sockets.append(idle(child.port, f"127.0.0.{41 + i % 10}"))
        held = child.settle()
        assert child.ask("store") == "stored"  # SQLite (WAL) and an fsynced file, meanwhile
        assert held is not None and held <= baseline + 32 + 2, f"{held} descriptors in use"
        assert all_end(sockets, within_s=15) == []  # the 32 let in are closed at the deadline
        assert get(child.port) == 200
        assert child.fds() <= baseline + 2
    finally:
        child.stop()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebServer]:
    cfg = web_config(max_connections=40, max_connections_per_address=10, request_timeout_s=2)
    page = serve(LiveState(), cfg, data_dir=tmp_path)
    try:
        yield page
    finally:
        page.stop()


def test_a_request_sent_one_byte_at_a_time_is_cut_off_at_the_deadline(web: WebServer) -> None:
    with socket.create_connection(("127.0.0.1", web.port), timeout=0.2) as sock:
        head = b"GET /login HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200
        started = time.monotonic()
        sent = 0
        with pytest.raises((BrokenPipeError, ConnectionResetError, EOFError)):
            for byte in head:
                sock.sendall(bytes([byte]))
                sent += 1
                try:
                    if sock.recv(1) == b"":
                        raise EOFError
                except TimeoutError:
                    pass  # 0.2 s per byte: 40 s for the whole head
        assert sent < len(head)
        assert time.monotonic() - started < 20
    assert web.connections.timed_out >= 1 and web.connections.open == 0


def test_one_address_cannot_take_the_page_from_the_guards_screen(
    web: WebServer, sockets: list[socket.socket]
) -> None:
    for _ in range(30):
        sockets.append(idle(web.port, "127.0.0.51"))
    surplus = all_end(sockets, within_s=0.5)  # well before the 2 s deadline
    assert len(surplus) == 10  # its own share stays (until the deadline), the rest is refused
    assert get(web.port, source="127.0.0.52") == 200  # another screen is served meanwhile
    assert web.connections.refused >= 20


def test_a_live_stream_and_a_kept_alive_browser_outlast_the_request_deadline(
    web: WebServer,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    conn.request("GET", "/login")
    answer = conn.getresponse()
    html = answer.read().decode()
    token = html.split('name="token" value="', 1)[1].split('"', 1)[0]
    cookie = answer.getheader("set-cookie", "").split(";", 1)[0]
    time.sleep(3)  # idle between requests: uvicorn's 5 s keep-alive, not the 2 s deadline
    conn.request(
        "POST",
        "/login",
        body=f"name=budi&password=jaga-malam-17&token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )
    login = conn.getresponse()
    login.read()
    assert login.status == 303
    session = login.getheader("set-cookie", "").split(";", 1)[0]
    conn.request("GET", "/stream", headers={"Cookie": session})
    stream = conn.getresponse()
    assert stream.status == 200
    state_changed = threading.Timer(
        3,  # past the 2 s request deadline: a whole request is off the clock
        lambda: web._state.on_status(
            Status(site="bangka-barat", device="gudang-01", state="online", boot_id="b")
        ),
    )
    state_changed.start()
    lines = b""
    while b"gudang-01" not in lines:
        line = stream.readline()
        assert line, "the stream was cut"
        lines += line
    conn.close()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "web.crt", tmp / "web.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_over_tls_a_silent_handshake_is_cut_off_and_pages_carry_hsts(
    tmp_path: Path, sockets: list[socket.socket]
) -> None:
    cert, key = self_signed(tmp_path)
    cfg = web_config(
        max_connections=8,
        max_connections_per_address=4,
        request_timeout_s=2,
        tls={"cert": str(cert), "key": str(key)},
    )
    web = serve(LiveState(), cfg, data_dir=tmp_path)
    try:
        assert web.url.startswith("https://")
        for _ in range(6):
            sockets.append(idle(web.port, "127.0.0.61"))  # no ClientHello, ever
        assert len(all_end(sockets, within_s=0.5)) == 4  # its share waits for its deadline
        assert all_end(sockets, within_s=10) == []  # ... and gets no 60 s from asyncio
        client = ssl.create_default_context(cafile=cert)
        conn = http.client.HTTPSConnection("127.0.0.1", web.port, context=client, timeout=5)
        conn.request("GET", "/login")
        answer = conn.getresponse()
        assert answer.status == 200
        assert answer.getheader("strict-transport-security") == "max-age=31536000"
        conn.close()
        assert web.connections.timed_out >= 4
    finally:
        web.stop()


def test_a_refused_connection_costs_no_descriptor(web: WebServer) -> None:
    before = len(os.listdir("/proc/self/fd"))
    socks = [idle(web.port, "127.0.0.71") for _ in range(25)]
    try:
        all_end(socks, within_s=0.5)
        server_side = len(os.listdir("/proc/self/fd")) - before - len(socks)
        assert server_side <= 10 + 1, f"the page holds {server_side} descriptors for one address"
    finally:
        for s in socks:
            s.close()
