"""The page as served on loopback: it starts, refuses a taken port, ends streams at expiry."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from argon2 import PasswordHasher

from broker.web.app import create_app
from broker.web.config import WebConfig
from broker.web.passwords import hash_password
from broker.web.server import WebError, serve
from broker.web.state import LiveState
from protocol.models import Status

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def config(bind: str = "127.0.0.1:0") -> WebConfig:
    account = {
        "name": "budi",
        "role": "guard",
        "sites": ["bangka-barat"],
        "password_hash": hash_password("jaga-malam-17", CHEAP),
    }
    return WebConfig.model_validate({"bind": bind, "accounts": [account], "session_hours": 1})


def http(port: int, request: str, *, until: bytes = b"", timeout: float = 3.0) -> bytes:
    """A raw HTTP/1.1 exchange; reads until the server closes, `until` shows up, or timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=0.1) as sock:
        sock.sendall(request.encode())
        while time.monotonic() < deadline and not (until and until in data):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
    return data


def login(port: int) -> str:
    form = http(port, "GET /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").decode()
    token = form.split('name="token" value="', 1)[1].split('"', 1)[0]
    cookie = form.split("jaga_login=", 1)[1].split(";", 1)[0]
    body = f"name=budi&password=jaga-malam-17&token={token}"
    answer = http(
        port,
        "POST /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        f"Cookie: jaga_login={cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}",
    ).decode()
    assert answer.startswith("HTTP/1.1 303"), answer[:200]
    return answer.split("jaga_session=", 1)[1].split(";", 1)[0]


def test_the_page_starts_on_a_free_port_and_stops(tmp_path: Path) -> None:
    state = LiveState()
    web = serve(state, config(), data_dir=tmp_path)
    try:
        assert web.running and web.url.startswith("http://127.0.0.1:")
        page = http(web.port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert page.startswith(b"HTTP/1.1 303") and b"location: /login" in page
        assert (tmp_path / "web-session.key").exists()
    finally:
        web.stop()
    assert not web.running


def test_a_taken_address_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WebError, match=f"could not listen on 127.0.0.1:{port}"):
            serve(LiveState(), config(f"127.0.0.1:{port}"), data_dir=tmp_path)


def get(port: int, path: str, cookie: str) -> str:
    request = f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    return http(port, request + f"Cookie: jaga_session={cookie}\r\n\r\n").decode()


def test_a_logged_out_cookie_stays_refused_after_a_restart(tmp_path: Path) -> None:
    cfg = config()  # one password hash: a new one would end the session by itself
    web = serve(LiveState(), cfg, data_dir=tmp_path)
    try:
        cookie = login(web.port)
        page = get(web.port, "/", cookie)
        assert page.startswith("HTTP/1.1 200")
        body = "csrf=" + page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        out = http(
            web.port,
            "POST /logout HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            f"Cookie: jaga_session={cookie}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}",
        ).decode()
        assert out.startswith("HTTP/1.1 303") and "location: /login" in out
        assert get(web.port, "/api/state", cookie).startswith("HTTP/1.1 401")
    finally:
        web.stop()
    again = serve(LiveState(), cfg, data_dir=tmp_path)  # same data dir, same signing key
    try:
        assert get(again.port, "/api/state", cookie).startswith("HTTP/1.1 401")
        answer = get(again.port, "/", cookie)
        assert answer.startswith("HTTP/1.1 303") and "location: /login" in answer
        assert get(again.port, "/", login(again.port)).startswith("HTTP/1.1 200")  # a new login
    finally:
        again.stop()


def test_an_open_stream_carries_changes_and_is_told_when_its_session_ends() -> None:
    now = [1_800_000_000.0]
    state = LiveState()
    app = create_app(state, config(), secret=b"k" * 32, clock=lambda: now[0], keepalive_s=0.1)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        cookie = login(port)
        request = f"GET /stream HTTP/1.1\r\nHost: t\r\nCookie: jaga_session={cookie}\r\n\r\n"

        def later() -> None:
            time.sleep(0.3)
            state.on_status(
                Status(site="bangka-barat", device="gudang-01", state="online", boot_id="b")
            )
            state.on_status(
                Status(site="pangkal-pinang", device="gudang-09", state="online", boot_id="b")
            )
            time.sleep(0.3)
            now[0] += 3601

        threading.Thread(target=later, daemon=True).start()
        data = http(port, request, until=b"event: expired", timeout=5).decode()
        assert "event: snapshot" in data and "event: tick" in data
        assert '"device":"gudang-01"' in data and "gudang-09" not in data
        assert "event: expired" in data
        assert state.subscribers == 0 or _eventually_zero(state)
    finally:
        server.should_exit = True
        thread.join(5)


def _eventually_zero(state: LiveState) -> bool:
    deadline = time.monotonic() + 2
    while state.subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    return state.subscribers == 0
