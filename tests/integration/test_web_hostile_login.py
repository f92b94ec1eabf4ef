"""Issue 14, finding 8: wrong logins must not turn the page into a memory amplifier.

40 wrong logins from 8 addresses once ran 40 argon2 checks at once (64 MiB each: a 2.4 GB
peak in the collector). The page is served for real on loopback; the source addresses are
127.0.0.x, which Linux routes to lo. Argon2 is the real one, through a spy that counts how
many of its checks run at the same time.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from broker.web.app import create_app
from broker.web.config import WebConfig
from broker.web.passwords import hash_password
from broker.web.server import WebServer, serve
from broker.web.state import LiveState

SLOW = PasswordHasher(time_cost=40, memory_cost=4096, parallelism=1)
"""Slow enough (tens of ms) for checks to overlap, small enough (4 MiB) for a shared machine."""
HASHES = {
    "budi": hash_password("budi-rahasia-1", SLOW),
    "sari": hash_password("sari-rahasia-2", SLOW),
}


class CountingHasher(PasswordHasher):
    """The real argon2 verify, counting the checks in flight and the most ever at once."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        try:
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1


def config(**kw: object) -> WebConfig:
    accounts = [
        {"name": n, "role": "guard", "sites": ["bangka-barat"], "password_hash": h}
        for n, h in HASHES.items()
    ]
    return WebConfig.model_validate(
        {"bind": "127.0.0.1:0", "accounts": accounts, "session_hours": 1} | kw
    )


@dataclass
class Answer:
    status: int
    body: str
    retry_after: str | None


@dataclass
class Page:
    web: WebServer
    spy: CountingHasher

    def form(self) -> tuple[str, str]:
        """The login form's token and the cookie that vouches for it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.web.port, timeout=10)
        conn.request("GET", "/login")
        answer = conn.getresponse()
        html = answer.read().decode()
        cookie = answer.getheader("set-cookie", "").split(";", 1)[0]
        conn.close()
        return html.split('name="token" value="', 1)[1].split('"', 1)[0], cookie

    def login(self, source: str, name: str, password: str, form: tuple[str, str]) -> Answer:
        token, cookie = form
        body = urlencode({"name": name, "password": password, "token": token})
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.web.port, timeout=30, source_address=(source, 0)
        )
        conn.request(
            "POST",
            "/login",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
        )
        answer = conn.getresponse()
        text = answer.read().decode()
        conn.close()
        return Answer(answer.status, text, answer.getheader("retry-after"))


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    spy = CountingHasher()
    web = serve(LiveState(), config(login_concurrency=2), data_dir=tmp_path, hasher=spy)
    try:
        yield Page(web, spy)
    finally:
        web.stop()


def test_wrong_logins_from_many_addresses_never_run_more_than_two_argon2_checks_at_once(
    page: Page,
) -> None:
    form = page.form()
    sources = [f"127.0.0.{21 + i % 8}" for i in range(16)]  # 8 addresses, 2 each: within budget
    start = threading.Barrier(len(sources))
    answers: list[Answer] = []

    def guess(source: str) -> None:
        start.wait()
        answers.append(page.login(source, "budi", "tebak-tebak", form))

    threads = [threading.Thread(target=guess, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == len(sources)
    assert page.spy.most <= 2, f"{page.spy.most} argon2 checks ran at once"
    assert page.spy.calls >= 2
    busy = [a for a in answers if a.status == 503]
    assert {a.status for a in answers} <= {401, 503}
    assert busy, "16 logins at once, 2 checks at a time: some must have been told to retry"
    for a in busy:
        assert "sedang memeriksa login lain" in a.body and a.retry_after == "2"  # in Indonesian
    assert page.spy.calls == len(answers) - len(busy)  # a refused login is never hashed


def test_an_address_out_of_wrong_guesses_is_refused_before_any_hashing(page: Page) -> None:
    form = page.form()
    for _ in range(5):
        assert page.login("127.0.0.31", "budi", "tebak-tebak", form).status == 401
    assert page.spy.calls == 5
    refused = page.login("127.0.0.31", "sari", "tebak-lagi", form)  # another account: same pause
    assert refused.status == 429 and refused.retry_after is not None
    assert "Terlalu banyak kata sandi salah" in refused.body  # the login page speaks Indonesian
    also = page.login("127.0.0.32", "budi", "budi-rahasia-1", form)  # budi's own budget is spent
    assert also.status == 429
    assert page.spy.calls == 5


def test_addresses_of_one_ipv6_slash_64_share_one_budget(tmp_path: Path) -> None:
    spy = CountingHasher()
    app = create_app(LiveState(), config(), secret=b"k" * 32, hasher=spy)

    def login(address: str, name: str) -> int:
        client = TestClient(app, client=(address, 50000), follow_redirects=False)
        html = client.get("/login").text
        token = html.split('name="token" value="', 1)[1].split('"', 1)[0]
        form = {"name": name, "password": "tebak-tebak", "token": token}
        return client.post("/login", data=form).status_code

    for i, name in enumerate(["budi", "sari", "nobody", "ops", "root"], start=1):
        assert login(f"2001:db8:0:7::{i}", name) == 401  # one host, five addresses and names
    hashed = spy.calls
    assert login("2001:db8:0:7:ffff::99", "admin") == 429
    assert spy.calls == hashed
    assert login("2001:db8:0:8::1", "admin") == 401  # the next /64 is someone else
