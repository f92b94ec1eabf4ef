"""The officer on patrol: an alarm's notification on the phone with its picture, its link to
the alert's page, and one tap to acknowledge it.

Real Mosquitto (mutual TLS), InfluxDB, the collector process with its page, and the real Agent
of gudang-01 on simulated pins and its simulated camera. The phone's notification service is
a webhook on loopback that apprise's json:// posts to (devstack.watch.NotificationSink); the
phone's browser is headless Chromium at 390x844 with touch.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ViewportSize, expect, sync_playwright

from broker.evidence_events import EvidenceEvents
from broker.i18n import DEFAULT_TZ, clock
from broker.influx_reader import InfluxReader
from devstack.demo import demo_alerts
from devstack.ports import free_port
from devstack.stack import DATABASE, DEMO_UNITS, Stack
from devstack.watch import NotificationSink, SiteWatch
from tests.integration.test_web_guard_post import CHROMIUM, CHROMIUM_ARGS, PASSWORDS, SITE
from tests.integration.test_web_guard_post import web_config as post_accounts
from tests.support import LiveAgent, eventually, say

pytestmark = pytest.mark.integration
PHONE: ViewportSize = {"width": 390, "height": 844}
PHONE_SCREENSHOT_ENV = "JAGA_PHONE_SCREENSHOT"
"""Set to a path (docs/phone-notification.png) to keep the phone's notification there."""
PHONE_PAGE_SCREENSHOT_ENV = "JAGA_PHONE_PAGE_SCREENSHOT"
"""Set to a path (docs/phone-alert.png) to keep the phone's acknowledged alert page there."""
LINK = re.compile(r"(https?://\S+/alerts/[a-z0-9-]+)")


@dataclass
class Alarm:
    stack: Stack
    browser: Browser
    url: str
    trigger_ns: int
    text: dict[str, Any]
    picture: dict[str, Any]
    picture_at: int
    text_at: int
    watch: SiteWatch


@pytest.fixture(scope="module")
def alarm(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Alarm]:
    """The site armed at night; gudang-01's back door forced; both notifications received."""
    root = tmp_path_factory.mktemp("phone")
    sink = NotificationSink()
    port = free_port()
    web = post_accounts().model_dump(mode="json", exclude_none=True)
    web["bind"] = f"127.0.0.1:{port}"
    stack = Stack(
        root,
        units=DEMO_UNITS,
        registry_dir=registry,
        heartbeat_s=2,
        alerts=demo_alerts(sink.url),
        web=web,
    )
    stack.configure_broker()
    agent: LiveAgent | None = None
    watch: SiteWatch | None = None
    try:
        stack.start_servers()
        watch = SiteWatch(stack.registry, stack.broker_port, stack.site).start()
        agent = LiveAgent(stack.unit_dir("gudang-01") / "agent.toml").__enter__()
        armed = stack.collector_cli("arm", SITE, "--by", "demo")
        assert armed.returncode == 0, armed.stderr
        eventually(lambda: agent is not None and agent.agent.armed, timeout=60)
        trigger_ns = time.time_ns()
        agent.set("pintu-utama", True)
        found = eventually(lambda: _with_picture(sink), timeout=60)
        assert found is not None
        picture_at, picture = found
        (link,) = LINK.findall(picture["message"])
        text_at, text = next((at, b) for at, b in sink.arrivals if link in b["message"])
        agent.set("pintu-utama", False)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield Alarm(
                    stack,
                    browser,
                    f"http://127.0.0.1:{port}",
                    trigger_ns,
                    text,
                    picture,
                    picture_at,
                    text_at,
                    watch,
                )
            finally:
                browser.close()
    finally:
        if agent is not None:
            agent.close()
        if watch is not None:
            watch.stop()
        stack.stop_all()
        sink.stop()


def test_the_text_comes_first_then_the_still_byte_for_byte_as_the_unit_signed_it(
    alarm: Alarm, request: pytest.FixtureRequest
) -> None:
    text, picture = alarm.text, alarm.picture
    assert text["attachments"] == [] and alarm.text_at < alarm.picture_at  # never waited for it
    assert text["title"].startswith("[KRITIS] Pintu dibuka paksa")  # Indonesian by default
    assert "jaga-collector" not in text["message"]
    (link,) = LINK.findall(text["message"])
    assert link.startswith(alarm.url)
    assert picture["title"].endswith("(foto)")
    (attached,) = picture["attachments"]
    data = base64.b64decode(attached["base64"])
    sha = hashlib.sha256(data).hexdigest()
    # The SHA-256 the unit signed: in the camera event caused by the alert's trigger, as stored.
    assert alarm.stack.influx is not None
    events = EvidenceEvents(InfluxReader(alarm.stack.influx.url, DATABASE))
    alert_id = link.rsplit("/", 1)[1]
    trigger_id = alarm.watch.raised()[alert_id].event_id
    assert trigger_id is not None
    trigger = events.event(trigger_id)
    assert trigger is not None
    signed = [h for e in events.signing(trigger) for h in e.snapshot_sha256 or ()]
    assert sha in signed
    vault = alarm.stack.root / "collector" / "data" / "evidence" / f"{sha}.jpg"
    assert data == vault.read_bytes()
    assert f"SHA-256 {sha}" in picture["message"]
    say(
        request,
        f"phone: trigger -> picture delivered {(alarm.picture_at - alarm.trigger_ns) / 1e9:.1f} s",
    )


def test_on_a_phone_the_link_logs_in_and_one_tap_acknowledges_for_every_open_page(
    alarm: Alarm, request: pytest.FixtureRequest
) -> None:
    (link,) = LINK.findall(alarm.text["message"])
    alert_id = link.rsplit("/", 1)[1]
    with alarm.browser.new_context(viewport={"width": 1280, "height": 720}) as desk:
        post = desk.new_page()  # the guard post's screen, open all along
        _login(post, f"{alarm.url}/login", "budi")
        card = post.locator(f'.alarm[data-alert-id="{alert_id}"]')
        expect(card).to_be_visible(timeout=20_000)
        with alarm.browser.new_context(
            viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
        ) as phone_context:
            phone = phone_context.new_page()
            phone.goto(link)  # tap 1: the notification's link; the session is gone: log in
            assert "/login" in phone.url
            _login(phone, None, "wati")
            phone.wait_for_url(link)
            expect(phone.locator("#ack")).to_have_text("Akui")
            assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            expect(phone.locator(".alert-page-still img")).to_be_visible()
            tapped = time.monotonic()
            phone.locator("#ack").tap()  # tap 2: Akui
            phone.wait_for_url(link)
            expect(phone.locator("#acked")).to_contain_text("Diakui oleh Wati Lestari (wati)")
            expect(card.locator(".acked")).to_contain_text("Wati Lestari (wati)", timeout=15_000)
            seen = time.monotonic() - tapped
            if os.environ.get(PHONE_PAGE_SCREENSHOT_ENV):
                phone.screenshot(path=os.environ[PHONE_PAGE_SCREENSHOT_ENV])
            if os.environ.get(PHONE_SCREENSHOT_ENV):
                _screenshot(alarm, phone_context, os.environ[PHONE_SCREENSHOT_ENV])
    say(request, f"phone: Akui tapped -> the open post page shows it in {seen:.1f} s")


def _with_picture(sink: NotificationSink) -> tuple[int, dict[str, Any]] | None:
    """The first notification that came with a picture (the warnings of the units' health may
    come too: the demo's route takes both severities)."""
    return next(((at, b) for at, b in sink.arrivals if b.get("attachments")), None)


def _login(page: Any, url: str | None, name: str) -> None:
    if url is not None:
        page.goto(url)
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', PASSWORDS[name])
    if _touch(page):
        page.locator('button[type="submit"]').tap()
    else:
        page.click('button[type="submit"]')
    page.wait_for_url(lambda u: "/login" not in u)


def _touch(page: Any) -> bool:
    return bool(page.evaluate("'ontouchstart' in window"))


def _screenshot(alarm: Alarm, context: Any, path: str) -> None:
    """The webhook's rendering of the two notifications as they arrive on the phone."""
    page = context.new_page()
    arrived = [(alarm.text_at, alarm.text), (alarm.picture_at, alarm.picture)]
    page.set_content(phone_rendering(arrived))
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    page.screenshot(path=path)
    page.close()


def phone_rendering(arrived: list[tuple[int, dict[str, Any]]]) -> str:
    """Notifications as a phone's lock screen shows them (times in WIB, the site's): newest
    first, a picture under its text."""
    cards = []
    for at, body in reversed(arrived):
        pictures = "".join(
            f'<img src="data:{html.escape(a["mimetype"])};base64,{a["base64"]}">'
            for a in body.get("attachments") or []
        )
        message = html.escape(body["message"])
        message = LINK.sub(r'<a href="\1">\1</a>', message).replace("\n", "<br>")
        cards.append(
            f'<div class="n"><div class="app">Jaga · {clock(at, DEFAULT_TZ)}</div>'
            f'<div class="t">{html.escape(body["title"])}</div>'
            f'<div class="m">{message}</div>{pictures}</div>'
        )
    now = clock(arrived[-1][0], DEFAULT_TZ).split()[0]
    return (
        "<!doctype html><meta name=viewport content='width=device-width'><style>"
        "body{margin:0;background:linear-gradient(#1d2733,#0e1318);font:15px system-ui,"
        "sans-serif;color:#e9edf2;min-height:100vh;padding:44px 10px 10px;box-sizing:border-box}"
        ".clock{text-align:center;font-size:42px;font-weight:300;margin:8px 0 18px}"
        ".n{background:#262e38;border-radius:18px;padding:12px 14px;margin-bottom:10px}"
        ".app{font-size:12px;color:#9aa5b1;margin-bottom:4px}.t{font-weight:700}"
        ".m{font-size:13px;color:#c9d1da;margin-top:4px;overflow-wrap:anywhere}"
        ".m a{color:#8ab4f8}img{width:100%;border-radius:10px;margin-top:8px;display:block}"
        f"</style><div class=clock>{now}</div>{''.join(cards)}"
    )
