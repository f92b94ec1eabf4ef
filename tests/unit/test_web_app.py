"""The page's HTTP surface in-process: login, pauses, sessions, CSRF, site scoping, evidence."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from PIL import Image
from starlette.testclient import TestClient

from broker.evidence import EvidenceVault
from broker.refs import EventRef
from broker.web.app import create_app
from broker.web.config import WebConfig
from broker.web.passwords import hash_password
from broker.web.state import LiveState
from protocol.models import Event, Kind

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SITE, OTHER = "bangka-barat", "pangkal-pinang"
NOW = 1_800_000_000 * 10**9
SECRET = b"s" * 32
PASSWORDS = {"budi": "budi-rahasia-1", "sari": "sari-rahasia-2", "ops": "ops-rahasia-3"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def config(**kw: Any) -> WebConfig:
    accounts = [
        {"name": "budi", "full_name": "Budi Santoso", "role": "guard", "sites": [SITE]},
        {"name": "sari", "role": "guard", "sites": [OTHER]},
        {"name": "ops", "role": "operator", "sites": ["*"]},
    ]
    for a in accounts:
        a["password_hash"] = hash_password(PASSWORDS[str(a["name"])], CHEAP)
    return WebConfig.model_validate({"accounts": accounts, "session_hours": 1} | kw)


def jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (shade, shade, shade)).save(out, "JPEG")
    return out.getvalue()


def door_event(eid: str, site: str, device: str) -> Event:
    return Event(
        id=eid,
        site=site,
        device=device,
        sensor="pintu",
        kind=Kind.DOOR,
        state="open",
        seq=7,
        boot_id="b",
        ts=NOW,
        mono_ns=1,
        clock_synced=True,
        prev="0" * 64,
        sig="s" * 40,
    )


def camera_event(eid: str, cause: str, shots: tuple[str, ...]) -> Event:
    """What a unit signs once the pictures around `cause` are taken."""
    return Event(
        id=eid,
        site=SITE,
        device="gudang-01",
        sensor="camera",
        kind=Kind.CAMERA,
        state="snapshot",
        seq=8,
        boot_id="b",
        ts=NOW,
        mono_ns=2,
        clock_synced=True,
        snapshot_sha256=shots,
        cause=cause,
        prev="1" * 64,
        sig="s" * 40,
    )


def alert(aid: str, site: str, device: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": aid,
        "site": site,
        "device": device,
        "sensor": "pintu",
        "rule": "forced-door",
        "severity": "critical",
        "state": "raised",
        "latched": True,
        "title": "Forced door",
        "count": 1,
        "raised_at": NOW,
        "last_seen": NOW,
        "event_id": event_id,
    }


class Post:
    """The app on a TestClient, with a LiveState holding one alarm per site."""

    def __init__(
        self,
        tmp: Path,
        ack: Callable[[str, str], bool] | None = None,
        cfg: WebConfig | None = None,
        ca_fingerprint: str | None = None,
    ) -> None:
        self.clock = Clock()
        self.state = LiveState(clock=lambda: NOW)
        self.store = EvidenceVault(tmp / "evidence")
        self.acks: list[tuple[str, str]] = []
        self.config = cfg or config()
        shots = []
        for i in range(2):
            sha = self.store.put(jpeg(40 + i * 80), EventRef(SITE, "gudang-01", "cam-1"))
            shots.append(sha)
        self.shots = shots
        self.state.on_event(door_event("ev-1", SITE, "gudang-01"))
        self.state.on_event(camera_event("cam-1", "ev-1", tuple(shots)))
        for sha, role in zip(shots, ["before", "still"], strict=True):
            self.state.on_picture("cam-1", sha, SITE, "gudang-01", role)
        self.state.on_alert(alert("forced-door-aaaa", SITE, "gudang-01", "ev-1"))
        self.other_sha = self.store.put(jpeg(200), EventRef(OTHER, "gudang-09", "ev-9"))
        self.state.on_event(door_event("ev-9", OTHER, "gudang-09"))
        self.state.on_alert(alert("forced-door-bbbb", OTHER, "gudang-09", "ev-9"))

        def record(alert_id: str, by: str) -> bool:
            self.acks.append((alert_id, by))
            return True

        app = create_app(
            self.state,
            self.config,
            secret=SECRET,
            ack=ack or record,
            evidence=self.store,
            clock=self.clock,
            ca_fingerprint=ca_fingerprint,
        )
        self.app = app

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)

    def login(self, client: TestClient, name: str, password: str | None = None) -> Any:
        form = client.get("/login")
        token = _field(form.text, "token")
        return client.post(
            "/login",
            data={
                "name": name,
                "password": password or PASSWORDS[name],
                "token": token,
                "next": "/",
            },
        )

    def logged_in(self, name: str) -> TestClient:
        client = self.client()
        assert self.login(client, name).status_code == 303
        return client


def _field(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def csrf_of(client: TestClient) -> str:
    page = client.get("/")
    assert page.status_code == 200
    return _field(page.text, "csrf")


@pytest.fixture
def post(tmp_path: Path) -> Iterator[Post]:
    yield Post(tmp_path)


# no anonymous access ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/events/ev-1"])
def test_a_logged_out_browser_is_sent_to_the_login_page(post: Post, path: str) -> None:
    client = post.client()
    answer = client.get(path)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    page = client.get(answer.headers["location"])
    assert page.status_code == 200 and 'name="password"' in page.text


@pytest.mark.parametrize("path", ["/api/state", "/stream", f"/pictures/{'a' * 64}.jpg"])
def test_data_is_refused_without_a_session(post: Post, path: str) -> None:
    assert post.client().get(path).status_code == 401


def test_an_ack_without_a_session_does_not_reach_the_alert_engine(post: Post) -> None:
    answer = post.client().post(
        "/alerts/forced-door-aaaa/ack", data={"csrf": "x"}, headers={"Accept": "application/json"}
    )
    assert answer.status_code == 401 and post.acks == []


def test_every_answer_forbids_framing_and_foreign_scripts(post: Post) -> None:
    headers = post.client().get("/login").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in headers  # plain HTTP on loopback: no HSTS


def test_a_server_error_still_carries_the_security_headers(tmp_path: Path) -> None:
    def broken(alert_id: str, by: str) -> bool:
        raise RuntimeError("the alert engine fell over")

    post = Post(tmp_path, ack=broken)
    budi = TestClient(post.app, follow_redirects=False, raise_server_exceptions=False)
    assert post.login(budi, "budi").status_code == 303
    answer = budi.post("/alerts/forced-door-aaaa/ack", data={"csrf": csrf_of(budi)})
    assert answer.status_code == 500
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"


def test_over_tls_every_answer_tells_browsers_to_come_back_only_over_tls(tmp_path: Path) -> None:
    def broken(alert_id: str, by: str) -> bool:
        raise RuntimeError("the alert engine fell over")

    post = Post(tmp_path, ack=broken, cfg=config(tls={"cert": "s.crt", "key": "s.key"}))
    client = TestClient(
        post.app, base_url="https://t", follow_redirects=False, raise_server_exceptions=False
    )
    assert client.get("/login").headers["strict-transport-security"] == "max-age=31536000"
    assert post.login(client, "budi").status_code == 303
    error = client.post("/alerts/forced-door-aaaa/ack", data={"csrf": csrf_of(client)})
    assert error.status_code == 500
    assert error.headers["strict-transport-security"] == "max-age=31536000"


# logging in ---------------------------------------------------------------------------------


def test_the_right_password_opens_a_session_cookie_the_page_cannot_read(post: Post) -> None:
    client = post.client()
    answer = post.login(client, "budi")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "jaga_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Max-Age=3600" in cookie
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_logged_and_refused(
    post: Post, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "jaga.web")
    client = post.client()
    answer = post.login(client, "budi", "tebak-tebak")
    assert answer.status_code == 401 and "Nama atau kata sandi salah" in answer.text
    assert "wrong password for 'budi' from testclient" in caplog.text
    assert "tebak-tebak" not in caplog.text
    assert client.get("/api/state").status_code == 401
    assert post.login(client, "nobody", "x").status_code == 401  # unknown name: same answer


def test_a_login_form_from_elsewhere_is_refused(post: Post) -> None:
    client = post.client()
    answer = client.post(
        "/login", data={"name": "budi", "password": PASSWORDS["budi"], "token": "made-up"}
    )
    assert answer.status_code == 403 and "jaga_session" not in answer.headers.get("set-cookie", "")


def test_wrong_passwords_pause_the_account_even_for_the_right_one_until_the_pause_ends(
    post: Post, caplog: pytest.LogCaptureFixture
) -> None:
    client = post.client()
    for _ in range(5):
        assert post.login(client, "budi", "salah").status_code == 401
    paused = post.login(client, "budi")
    assert paused.status_code == 429 and "Terlalu banyak kata sandi salah" in paused.text
    assert 1 <= int(paused.headers["retry-after"]) <= 301
    assert "login refused for 'budi'" in caplog.text
    post.clock.now += 301
    assert post.login(client, "budi").status_code == 303


def test_next_never_leads_off_this_server(post: Post) -> None:
    def login_to(target: str) -> str:
        client = post.client()
        token = _field(client.get("/login").text, "token")
        answer = client.post(
            "/login",
            data={"name": "budi", "password": PASSWORDS["budi"], "token": token, "next": target},
        )
        assert answer.status_code == 303
        return str(answer.headers["location"])

    for target in ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/login"]:
        assert login_to(target) == "/"
    assert login_to("/events/ev-1") == "/events/ev-1"


# sessions end -------------------------------------------------------------------------------


def test_a_session_ends_after_its_lifetime(post: Post) -> None:
    client = post.logged_in("budi")
    post.clock.now += 3599
    assert client.get("/api/state").status_code == 200
    post.clock.now += 2
    assert client.get("/api/state").status_code == 401
    assert client.get("/").headers["location"] == "/login"


def test_a_changed_password_ends_the_sessions_of_the_old_one(tmp_path: Path) -> None:
    before = Post(tmp_path)
    client = before.logged_in("budi")
    cfg = before.config
    budi = cfg.accounts[0].model_copy(
        update={"password_hash": hash_password("baru-sekali-9", CHEAP)}
    )
    after = Post(tmp_path / "b", cfg=cfg.model_copy(update={"accounts": (budi, *cfg.accounts[1:])}))
    moved = after.client()
    moved.cookies = client.cookies
    assert moved.get("/api/state").status_code == 401


def test_logging_out_needs_the_page_token_and_ends_the_session(post: Post) -> None:
    client = post.logged_in("budi")
    cookie = client.cookies.get("jaga_session")
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/api/state").status_code == 200
    answer = client.post("/logout", data={"csrf": csrf_of(client)})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    replay = post.client()
    replay.cookies.set("jaga_session", str(cookie))
    assert replay.get("/api/state").status_code == 401


# each guard sees and acknowledges only its own sites ---------------------------------------


def test_a_guard_is_sent_only_its_own_sites_and_an_operator_all(post: Post) -> None:
    budi = post.logged_in("budi").get("/api/state").json()
    assert [s["site"] for s in budi["sites"]] == [SITE]
    assert [a["id"] for a in budi["sites"][0]["alerts"]] == ["forced-door-aaaa"]
    sari = post.logged_in("sari").get("/api/state").json()
    assert [s["site"] for s in sari["sites"]] == [OTHER]
    ops = post.logged_in("ops").get("/api/state").json()
    assert [s["site"] for s in ops["sites"]] == [SITE, OTHER]


def test_a_guard_acknowledges_its_sites_alert_with_its_name(post: Post) -> None:
    client = post.logged_in("budi")
    answer = client.post(
        "/alerts/forced-door-aaaa/ack",
        data={"csrf": csrf_of(client)},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 200 and answer.json()["by"] == "Budi Santoso (budi)"
    assert post.acks == [("forced-door-aaaa", "Budi Santoso (budi)")]


def test_a_plain_form_ack_without_javascript_returns_to_the_page(post: Post) -> None:
    client = post.logged_in("budi")
    answer = client.post("/alerts/forced-door-aaaa/ack", data={"csrf": csrf_of(client)})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert len(post.acks) == 1


def test_a_guard_cannot_acknowledge_another_sites_alert_even_by_hand(post: Post) -> None:
    client = post.logged_in("sari")
    answer = client.post(
        "/alerts/forced-door-aaaa/ack",
        data={"csrf": csrf_of(client)},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 404 and post.acks == []


def test_an_ack_without_the_pages_token_or_from_another_origin_is_refused(post: Post) -> None:
    client = post.logged_in("budi")
    token = csrf_of(client)
    json_ = {"Accept": "application/json"}
    assert client.post("/alerts/forced-door-aaaa/ack", data={}, headers=json_).status_code == 403
    other = post.logged_in("ops")
    stolen = csrf_of(other)  # a real token, but another session's
    assert (
        client.post(
            "/alerts/forced-door-aaaa/ack", data={"csrf": stolen}, headers=json_
        ).status_code
        == 403
    )
    cross = client.post(
        "/alerts/forced-door-aaaa/ack",
        data={"csrf": token},
        headers=json_ | {"Origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    assert post.acks == []


def test_the_alert_engines_refusal_is_told_to_the_guard(tmp_path: Path) -> None:
    def closed(alert_id: str, by: str) -> bool:
        raise ValueError(f"alert {alert_id} is already resolved")

    post = Post(tmp_path, ack=closed)
    client = post.logged_in("budi")
    answer = client.post(
        "/alerts/forced-door-aaaa/ack",
        data={"csrf": csrf_of(client)},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 409 and "already resolved" in answer.json()["error"]

    def busy(alert_id: str, by: str) -> bool:
        raise TimeoutError

    post3 = Post(tmp_path / "3", ack=busy)
    client3 = post3.logged_in("budi")
    late = client3.post(
        "/alerts/forced-door-aaaa/ack",
        data={"csrf": csrf_of(client3)},
        headers={"Accept": "application/json"},
    )
    assert late.status_code == 503 and "tidak menjawab" in late.json()["error"]
    post2 = Post(tmp_path / "2", ack=lambda a, b: False)
    client2 = post2.logged_in("budi")
    refused = client2.post(
        "/alerts/forced-door-aaaa/ack",
        data={"csrf": csrf_of(client2)},
        headers={"Accept": "application/json"},
    )
    assert refused.status_code == 409


# evidence -----------------------------------------------------------------------------------


def test_the_evidence_viewer_shows_each_pictures_hash_and_that_it_verifies(post: Post) -> None:
    page = post.logged_in("budi").get("/events/ev-1")
    assert page.status_code == 200
    for sha in post.shots:
        assert sha in page.text
    assert page.text.count('data-verifies="yes"') == 2
    assert 'data-verdict="vouched"' in page.text
    assert page.text.count("ditandatangani unit dalam peristiwa <code>cam-1</code>") == 2
    assert '<a href="/events/cam-1">' in page.text  # the camera event that signed them
    camera = post.logged_in("budi").get("/events/cam-1")
    assert 'data-verdict="vouched"' in camera.text and '<a href="/events/ev-1">' in camera.text


def test_an_altered_picture_is_shown_as_not_verifying(post: Post) -> None:
    post.store.path(post.shots[1]).write_bytes(jpeg(41))
    page = post.logged_in("budi").get("/events/ev-1")
    assert 'data-verifies="no"' in page.text and 'data-verdict="broken"' in page.text
    assert "TIDAK cocok dengan SHA-256" in page.text


def test_a_signed_picture_the_store_lacks_is_listed_as_missing(post: Post) -> None:
    post.store.path(post.shots[0]).unlink()
    page = post.logged_in("budi").get("/events/ev-1")
    assert 'data-verifies="missing"' in page.text and 'data-verdict="broken"' in page.text


def test_another_sites_evidence_and_pictures_are_not_found(post: Post) -> None:
    sari = post.logged_in("sari")
    assert sari.get("/events/ev-1").status_code == 404
    assert sari.get(f"/pictures/{post.shots[0]}.jpg").status_code == 404
    assert sari.get(f"/pictures/{post.other_sha}.jpg").status_code == 200
    budi = post.logged_in("budi")
    picture = budi.get(f"/pictures/{post.shots[0]}.jpg")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert picture.content == post.store.path(post.shots[0]).read_bytes()
    assert picture.headers["cache-control"] == "private, no-store"  # gone from it at logout
    assert budi.get(f"/pictures/{post.other_sha}.jpg").status_code == 404
    assert budi.get("/pictures/..%2Fcustody.jsonl").status_code == 404


def test_pictures_the_page_never_saw_are_found_through_the_custody_log(tmp_path: Path) -> None:
    post = Post(tmp_path)
    sha = post.store.put(jpeg(99), EventRef(SITE, "gudang-02", "ev-old"))
    budi = post.logged_in("budi")
    assert budi.get(f"/pictures/{sha}.jpg").status_code == 200
    page = budi.get("/events/ev-old")
    assert page.status_code == 200 and sha in page.text and 'data-verdict="intact"' in page.text
    assert "peristiwanya tidak dikenal di sini" in page.text  # budi reads Indonesian
    assert post.logged_in("sari").get("/events/ev-old").status_code == 404
    assert budi.get("/events/never-heard-of").status_code == 404


def test_another_units_pictures_under_the_same_event_id_stay_off_that_events_page(
    tmp_path: Path,
) -> None:
    post = Post(tmp_path)
    # gudang-09 of another site signed an event with the id cam-1 too, and brought a picture.
    intruder = post.store.put(jpeg(150), EventRef(OTHER, "gudang-09", "cam-1"))
    page = post.logged_in("budi").get("/events/ev-1")
    assert page.status_code == 200
    assert post.shots[0] in page.text and intruder not in page.text


def test_every_page_shows_the_site_ca_fingerprint_auditors_pin(tmp_path: Path) -> None:
    fingerprint = "ab" * 32
    post = Post(tmp_path, ca_fingerprint=fingerprint)
    assert fingerprint in post.client().get("/login").text  # before anyone logs in
    page = post.logged_in("sari").get("/")
    assert fingerprint in page.text and "Sidik jari CA lokasi" in page.text
    assert fingerprint not in Post(tmp_path / "none").logged_in("budi").get("/").text
