"""An alert's own page (`/alerts/<id>`, where a notification's link leads): behind the login,
which comes back to it; the alarm in the reader's language with its still; one button."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broker.web.state import LiveState
from tests.unit.test_web_app import SITE, Post, _field


def test_a_link_opened_logged_out_logs_in_and_comes_back_to_the_alert(tmp_path: Path) -> None:
    post = Post(tmp_path)
    client = post.client()
    answer = client.get("/alerts/forced-door-aaaa")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/alerts/forced-door-aaaa"
    form = client.get(answer.headers["location"])
    assert _field(form.text, "next") == "/alerts/forced-door-aaaa"
    logged = client.post(
        "/login",
        data={
            "name": "budi",
            "password": "budi-rahasia-1",
            "token": _field(form.text, "token"),
            "next": "/alerts/forced-door-aaaa",
        },
    )
    assert logged.headers["location"] == "/alerts/forced-door-aaaa"
    page = client.get("/alerts/forced-door-aaaa")
    assert page.status_code == 200
    assert '<html lang="id">' in page.text and "Forced door" in page.text  # the alarm
    assert f"/pictures/{post.shots[1]}.jpg" in page.text  # the still
    assert page.text.count('class="ack"') == 1 and ">Akui</button>" in page.text


def test_one_tap_acknowledges_as_the_logged_in_person_and_shows_it_done(tmp_path: Path) -> None:
    state_box: dict[str, Any] = {}

    def ack(alert_id: str, by: str) -> bool:
        state: LiveState = state_box["state"]
        acked = dict(state.alert(alert_id).model_dump(), state="acknowledged")  # type: ignore[union-attr]
        state.on_alert(acked | {"acked_by": by, "acked_at": 1_800_000_060 * 10**9})
        return True

    post = Post(tmp_path, ack=ack)
    state_box["state"] = post.state
    client = post.logged_in("budi")
    page = client.get("/alerts/forced-door-aaaa")
    tapped = client.post(
        "/alerts/forced-door-aaaa/ack",
        data={"csrf": _field(page.text, "csrf"), "next": _field(page.text, "next")},
    )
    assert tapped.status_code == 303
    assert tapped.headers["location"] == "/alerts/forced-door-aaaa"
    done = client.get("/alerts/forced-door-aaaa")
    assert "Diakui oleh Budi Santoso (budi) pukul" in done.text
    assert 'id="ack"' not in done.text


def test_another_sites_alert_or_a_closed_one_is_not_shown(tmp_path: Path) -> None:
    post = Post(tmp_path)
    budi = post.logged_in("budi")
    for path in ("/alerts/forced-door-bbbb", "/alerts/forced-door-gone", "/alerts/NOT%20AN%20ID"):
        answer = budi.get(path)
        assert answer.status_code == 404, path
        assert "pangkal-pinang" not in answer.text
    post.state.on_alert_gone(SITE, "forced-door-aaaa")
    assert budi.get("/alerts/forced-door-aaaa").status_code == 404


def test_an_ack_never_redirects_off_this_server(tmp_path: Path) -> None:
    post = Post(tmp_path)
    client = post.logged_in("budi")
    page = client.get("/alerts/forced-door-aaaa")
    answer = client.post(
        "/alerts/forced-door-aaaa/ack",
        data={"csrf": _field(page.text, "csrf"), "next": "//evil.example/"},
    )
    assert answer.headers["location"] == "/"
