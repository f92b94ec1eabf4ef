"""The wall of cameras in real headless Chromium against a running site.

Real Mosquitto (mutual TLS, ACL), InfluxDB, the collector process with its page, and the real
Agent on simulated pins and a simulated camera. Frames flow only while the wall is open: a
second collector identity listens on the live topics to see the bytes (operators may not).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from devstack.demo import demo_alerts
from devstack.stack import DEMO_UNITS, Stack
from devstack.watch import NotificationSink
from protocol import topics
from tests.integration.test_web_guard_post import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OTHER,
    PASSWORDS,
    SITE,
    _field,
    _rgb,
    mqtt_client,
    web_config,
)
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration
CAMERAS = ("gudang-01", "gudang-02")
WALL_SCREENSHOT_ENV = "JAGA_WALL_SCREENSHOT"
"""Set to a path (docs/guard-post-wall.png) to keep the wall's forced-door screenshot there."""


@dataclass
class LiveWatch:
    """Counts what crosses the live topics, as a collector identity and as an operator."""

    frames: list[tuple[float, str, int]] = field(default_factory=list)
    operator_frames: int = 0
    causes: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_live(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/live"):
            with self.lock:
                self.frames.append((time.monotonic(), msg.topic, len(msg.payload)))
        elif msg.topic.endswith("/event"):
            import json

            body = json.loads(msg.payload)
            with self.lock:
                self.causes.append((body.get("kind", ""), body.get("cause")))

    def on_operator(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # A frame is on a unit's live topic; the collector's signed cmd/live asks are not frames.
        if topics.parse_live_topic(msg.topic) is not None:
            self.operator_frames += 1

    def since(self, t: float) -> list[tuple[float, str, int]]:
        with self.lock:
            return [f for f in self.frames if f[0] >= t]


@dataclass
class Wall:
    stack: Stack
    url: str
    browser: Browser
    units: dict[str, LiveAgent]
    watch: LiveWatch

    def context(self, **kw: Any) -> BrowserContext:
        kw.setdefault("viewport", {"width": 1280, "height": 720})
        return self.browser.new_context(**kw)

    def login(self, context: BrowserContext, name: str) -> Page:
        page = context.new_page()
        page.goto(f"{self.url}/login?next=/wall")
        page.fill('input[name="name"]', name)
        page.fill('input[name="password"]', PASSWORDS[name])
        page.click('button[type="submit"]')
        page.wait_for_url("**/wall")
        return page


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Wall]:
    root = tmp_path_factory.mktemp("wall")
    sink = NotificationSink()
    web = web_config().model_dump(mode="json", exclude_none=True)
    web["bind"] = "127.0.0.1:0"
    stack = Stack(
        root,
        units=DEMO_UNITS,
        registry_dir=registry,
        heartbeat_s=2,
        alerts=demo_alerts(sink.url),
        web=web,
    )
    stack.configure_broker()
    stack.collector_identity("wall-watch")
    units: dict[str, LiveAgent] = {}
    watch = LiveWatch()
    clients: list[mqtt.Client] = []
    try:
        stack.start_servers()
        url = eventually(lambda: _page_url(stack), timeout=20)
        spy = mqtt_client(stack, "collector-wall-watch", "test-wall-spy")
        spy.on_message = watch.on_live
        spy.subscribe([("jaga/v1/+/+/live", 0), ("jaga/v1/+/+/event", 1)])
        op = mqtt_client(stack, "operator-demo", "test-wall-operator")
        op.on_message = watch.on_operator
        op.subscribe("jaga/v1/#", qos=0)
        clients += [spy, op]
        for device in CAMERAS:
            units[device] = LiveAgent(stack.unit_dir(device) / "agent.toml").__enter__()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield Wall(stack, str(url), browser, units, watch)
            finally:
                browser.close()
    finally:
        for agent in units.values():
            agent.close()
        for c in clients:
            c.disconnect()
            c.loop_stop()
        stack.stop_all()
        sink.stop()


def _page_url(stack: Stack) -> str | None:
    """The page's address from the collector's log (it listens on a free port)."""
    log = (stack.root / "collector" / "collector.log").read_text(errors="replace")
    for line in log.splitlines():
        if "guard-post page on " in line:
            return line.split("guard-post page on ", 1)[1].strip()
    return None


def frames_of(page: Page, device: str) -> int:
    return int(page.locator(f'.cam[data-device="{device}"]').get_attribute("data-frames") or 0)


def test_the_wall_shows_every_camera_of_the_site_live_and_its_frames_advance(wall: Wall) -> None:
    with wall.context() as context:
        page = wall.login(context, "budi")
        assert sorted(page.locator(".cam").evaluate_all("t => t.map(x => x.dataset.device)")) == [
            *CAMERAS
        ]
        for device in CAMERAS:
            page.wait_for_function(
                f"() => Number(document.querySelector('.cam[data-device=\"{device}\"]')"
                ".dataset.frames || 0) >= 3",
                timeout=20_000,
            )
        before = {d: frames_of(page, d) for d in CAMERAS}
        page.wait_for_timeout(2_000)
        for device in CAMERAS:
            assert frames_of(page, device) >= before[device] + 2  # about 2 frames a second
        ages = page.evaluate("() => window.jagaShown.slice(-10).map(s => s.ageMs)")
        assert ages and max(ages) < 2_000, ages
        assert page.locator('.cam[data-device="gudang-01"]').get_attribute("data-status") == (
            "online"
        )
        age = page.locator('.cam[data-device="gudang-01"] .cam-age').inner_text()
        assert re.search(r"\d+\.\d", age), age  # "0.4 detik lalu"


def test_an_operator_never_receives_live_frames(wall: Wall) -> None:
    assert wall.watch.since(0), "frames flowed while the wall was open"
    assert wall.watch.operator_frames == 0


def test_a_guard_of_another_site_never_receives_its_frames_even_by_guessing_urls(
    wall: Wall,
) -> None:
    with wall.context() as context:
        page = wall.login(context, "budi")  # frames flow for budi meanwhile
        page.wait_for_function("() => window.jagaShown.length >= 2", timeout=20_000)
        with httpx2.Client(base_url=wall.url, follow_redirects=False) as http:
            token = _field(http.get("/login").text, "token")
            http.post(
                "/login", data={"name": "sari", "password": PASSWORDS["sari"], "token": token}
            )
            assert "gudang-01" not in http.get("/wall").text
            for query in ("", f"?camera={SITE}/gudang-01", f"?camera={SITE}/gudang-01&camera=x/y"):
                answer = http.get(f"/wall/stream{query}", timeout=5)
                assert answer.status_code == 404, (query, answer.status_code)
                assert b"\xff\xd8" not in answer.content
            csrf = _field(http.get("/").text, "csrf")
            saved = http.post("/wall/save", data={"csrf": csrf, "camera": f"{SITE}/gudang-01"})
            assert saved.status_code == 404
        with httpx2.Client(base_url=wall.url) as anonymous:
            assert anonymous.get(f"/wall/stream?camera={SITE}/gudang-01").status_code == 401
    assert OTHER not in {t.split("/")[2] for _, t, _ in wall.watch.since(0)}


def test_streaming_stops_within_ten_seconds_after_the_viewer_leaves(wall: Wall) -> None:
    with wall.context() as context:
        page = wall.login(context, "budi")
        page.wait_for_function("() => window.jagaShown.length >= 4", timeout=20_000)
        assert wall.watch.since(time.monotonic() - 2)  # bytes on the live topics now
        page.close()
        left = time.monotonic()
    time.sleep(10)
    quiet_from = time.monotonic()
    time.sleep(5)
    late = wall.watch.since(quiet_from)
    assert late == [], f"{len(late)} frames more than 10 s after the viewer left"
    stamped = [f for f in wall.watch.since(left)]
    assert all(t - left <= 10 for t, _, _ in stamped)


def test_an_alarm_turns_its_tile_red_with_the_alarms_title_and_save_takes_evidence(
    wall: Wall,
) -> None:
    config = wall.stack.root / "collector" / "collector.toml"
    import subprocess

    from devstack.stack import BIN

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / "jaga-collector"), *args, "--config", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout

    with wall.context() as context:
        page = wall.login(context, "budi")
        tile = '.cam[data-device="gudang-01"]'
        page.wait_for_function("() => window.jagaShown.length >= 2", timeout=20_000)
        # Save: a signed snapshot command; the unit's camera event names the guard as cause.
        page.click('.cam[data-device="gudang-02"] .cam-save')
        eventually(lambda: ("camera", "guard:budi") in wall.watch.causes, timeout=20)
        cli("arm", SITE, "--by", "demo")
        eventually(lambda: wall.units["gudang-01"].agent.armed, timeout=15)
        wall.units["gudang-01"].set("pintu-utama", True)
        page.wait_for_selector(f"{tile}.cam--alarm", timeout=15_000)
        red = page.eval_on_selector(tile, "t => getComputedStyle(t).borderColor")
        assert _rgb(red)[0] > 200 and _rgb(red)[1] < 100, red
        assert page.locator(f"{tile} .cam-alarm").inner_text().strip()
        page.click(f"{tile} .cam-img")
        page.wait_for_selector("#big:not([hidden])")
        assert page.locator("#big-alarm").inner_text().strip() not in ("", "—")
        if os.environ.get(WALL_SCREENSHOT_ENV):
            _screenshot(wall, tile, os.environ[WALL_SCREENSHOT_ENV])
    wall.units["gudang-01"].set("pintu-utama", False)
    cli("disarm", SITE, "--by", "demo")


def _screenshot(wall: Wall, tile: str, path: str) -> None:
    """The wall as wati (Indonesian, the default) sees it during the forced-door alarm."""
    with wall.context() as context:
        page = wall.login(context, "wati")
        page.wait_for_selector(f"{tile}.cam--alarm", timeout=15_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.cam')]"
            ".every(t => Number(t.dataset.frames || 0) >= 2)",
            timeout=20_000,
        )
        page.screenshot(path=path)


@pytest.mark.parametrize(
    "screen",
    [
        {"viewport": {"width": 1920, "height": 1080}},
        {"viewport": {"width": 1280, "height": 720}},
        {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
    ],
    ids=["kiosk-1080p", "kiosk-720p", "phone"],
)
def test_the_wall_fits_kiosk_screens_and_a_phone(wall: Wall, screen: dict[str, Any]) -> None:
    """Every tile shows a picture without a sideways scroll; on a kiosk all are in view at once."""
    with wall.context(**screen) as context:
        page = wall.login(context, "budi")
        page.wait_for_function("() => window.jagaShown.length >= 2", timeout=20_000)
        width, height = screen["viewport"]["width"], screen["viewport"]["height"]
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        for device in CAMERAS:
            box = page.locator(f'.cam[data-device="{device}"] img').bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 60, (device, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (device, box)
            if width >= 1280:  # a kiosk: the whole wall at a glance
                assert box["y"] + box["height"] <= height + 1, (device, box)
