"""The guard post's page in real headless Chromium against a running site.

Real Mosquitto (mutual TLS, ACL), InfluxDB, the collector process and the real Agent on
simulated pins and a simulated camera. Until the collector calls LiveState itself, `PageFeed`
stands in for that wiring: it reads jaga/v1/# as an operator and makes the very calls the
collector will make (on_event/on_status/on_heartbeat, on_picture after EvidenceVault.put,
on_alert/on_alert_gone, on_arming). Alerts are published retained as the collector identity,
shaped by broker.alerts' own lifecycle; acknowledging runs that lifecycle and publishes the
result, so the page sees it come back over MQTT like any alert.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from starlette.testclient import TestClient

from broker.alerts import lifecycle
from broker.alerts.rules import AlertKey, Raise, Rule
from broker.evidence import EvidenceVault
from broker.evidence_events import EvidenceEvents
from broker.export import find_evidence_events
from broker.influx_reader import InfluxReader
from broker.refs import EventRef
from broker.web.app import create_app
from broker.web.config import WebConfig
from broker.web.passwords import hash_password
from broker.web.registry import preload
from broker.web.server import WebServer, serve
from broker.web.state import LiveState
from devstack.stack import DATABASE, DEMO_UNITS, Stack
from protocol import topics
from protocol.alerting import Alert, ArmingHow, ArmingMode, ArmingState
from protocol.models import Event, Heartbeat, Kind, Status, parse
from protocol.snapshot import Reassembler
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration
log = logging.getLogger("test.web")

SITE = "bangka-barat"
OTHER = "pangkal-pinang"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",  # the post's screen has been clicked once
]
PASSWORDS = {
    "budi": "jaga-malam-17",
    "sari": "jaga-siang-42",
    "ops": "ruang-kendali-9",
    "wati": "jaga-pagi-05",
}
SCREENSHOT_ENV = "JAGA_SCREENSHOT"
"""Set to a path (docs/guard-post.png) to keep the forced-door screenshot there."""


def mqtt_client(stack: Stack, who: str, client_id: str) -> mqtt.Client:
    reg = stack.registry
    cert, key = reg / "identities" / f"{who}.crt", reg / "identities" / f"{who}.key"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(reg / "ca" / "ca.crt"), certfile=str(cert), keyfile=str(key))
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    eventually(client.is_connected, timeout=10)
    return client


class PageFeed:
    """What the collector will do for the page, done from an operator's subscription."""

    def __init__(self, stack: Stack, state: LiveState, store: EvidenceVault) -> None:
        self.state = state
        self.store = store
        self.pictures = Reassembler()
        self.events: dict[str, Event] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.client = mqtt_client(stack, "operator-demo", "test-web-feed")
        self.client.on_message = self._on_message
        self.client.subscribe(f"{topics.ROOT}/#", qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg.topic, bytes(msg.payload))
        except Exception as exc:  # a test must see it, the paho thread must not die of it
            log.exception("feed failed on %s", msg.topic)
            self.errors.append(f"{msg.topic}: {exc!r}")

    def _handle(self, topic: str, payload: bytes) -> None:
        levels = topic.split("/")
        if len(levels) == 4 and levels[3] == "arming":
            if payload:
                self.state.on_arming(levels[2], json.loads(payload))
            return
        if len(levels) == 5 and levels[3] == "alert":
            if payload:
                body = json.loads(payload)
                with self._lock:
                    self.alerts[body["id"]] = body
                self.state.on_alert(body)
            else:
                self.state.on_alert_gone(levels[2], levels[4])
            return
        try:
            where = topics.parse_device_topic(topic)
        except topics.TopicError:
            return  # dead letters, site commands
        channel = where.channel
        if channel is topics.Channel.EVENT:
            event = parse(Event, payload)
            with self._lock:
                self.events[event.id] = event
            self.state.on_message(event)
        elif channel is topics.Channel.STATUS:
            self.state.on_message(parse(Status, payload))
        elif channel is topics.Channel.HEARTBEAT:
            self.state.on_message(parse(Heartbeat, payload))
        elif channel is topics.Channel.SNAPSHOT:
            done = self.pictures.feed(where.arg or "", payload)
            if done is not None:
                sha = self.store.put(done.data, EventRef(where.site, where.device, done.event))
                self.state.on_picture(done.event, sha, where.site, where.device, done.role)

    def last_door_open(self, device: str, after: float = 0) -> Event | None:
        with self._lock:
            doors = [
                e
                for e in self.events.values()
                if e.device == device
                and e.kind is Kind.DOOR
                and e.state == "open"
                and e.ts >= after * 1e9
            ]
        return max(doors, key=lambda e: e.seq) if doors else None

    def door_state(self, device: str, sensor: str) -> str | None:
        with self._lock:
            doors = [e for e in self.events.values() if e.device == device and e.sensor == sensor]
        return max(doors, key=lambda e: e.seq).state if doors else None

    def camera_event_of(self, cause: str) -> Event | None:
        with self._lock:
            return next((e for e in self.events.values() if e.cause == cause), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Collector:
    """Publishes what the alert engine would, retained, as the collector identity."""

    def __init__(self, stack: Stack, feed: PageFeed) -> None:
        # Its own collector identity: with the collector's it would kick the running collector.
        self.client = mqtt_client(stack, "collector-guard-post", "test-web-alerts")
        self.feed = feed
        self.acks: list[tuple[str, str]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)

    def arm(self, site: str) -> None:
        state = ArmingState(
            site=site,
            state=ArmingMode.ARMED,
            since=time.time_ns(),
            by="schedule",
            how=ArmingHow.SCHEDULE,
            exit_delay_s=30,
            entry_delay_s=0,
        )
        self.publish(topics.arming(site), state.to_json())

    def forced_door(self, door: Event) -> Alert:
        key = AlertKey(Rule.FORCED_DOOR, door.site, door.device, door.sensor)
        now = time.time_ns()
        signal = Raise(
            key,
            f"Forced door: {key.where} opened while armed",
            "opened while armed",
            now,
            latched=True,
            event_id=door.id,
        )
        alert = lifecycle.on_raise(None, signal).alert
        self.publish(topics.alert(alert.site, alert.id), alert.to_json())
        return alert

    def ack(self, alert_id: str, by: str) -> bool:
        """What the lead's callback does: the lifecycle acknowledges, the result is published."""
        self.acks.append((alert_id, by))
        current = self.feed.alerts.get(alert_id)
        if current is None:
            raise lifecycle.UnknownAlert(f"no alert {alert_id}")
        alert = Alert.model_validate_json(json.dumps(current))
        change = lifecycle.acknowledge(alert, by, time.time_ns())
        if change is not None:
            self.publish(topics.alert(change.alert.site, change.alert.id), change.alert.to_json())
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Site:
    stack: Stack
    state: LiveState
    store: EvidenceVault
    feed: PageFeed
    collector: Collector
    web: WebServer
    units: dict[str, LiveAgent]
    browser: Browser
    config: WebConfig

    @property
    def url(self) -> str:
        return self.web.url

    def context(self, **kw: Any) -> BrowserContext:
        kw.setdefault("viewport", {"width": 1280, "height": 720})
        return self.browser.new_context(**kw)

    def login(self, context: BrowserContext, name: str) -> Page:
        page = context.new_page()
        page.goto(f"{self.url}/")
        page.fill('input[name="name"]', name)
        page.fill('input[name="password"]', PASSWORDS[name])
        page.click('button[type="submit"]')
        page.wait_for_selector("#sites .site")
        return page

    def open_door(self, device: str, sensor: str) -> Event:
        """Open a door on the unit's pins; the signed event that says so."""
        if self.feed.door_state(device, sensor) not in (None, "closed"):
            self.close_door(device, sensor)  # left open by a test that failed
        before = time.time()
        self.units[device].set(sensor, True)
        return arrives(lambda: self.feed.last_door_open(device, before), timeout=10)

    def close_door(self, device: str, sensor: str) -> None:
        """Close it and wait until the unit said so (a quick reopen would be debounced away)."""
        self.units[device].set(sensor, False)
        eventually(lambda: self.feed.door_state(device, sensor) == "closed", timeout=10)


def arrives(probe: Callable[[], Event | None], timeout: float) -> Event:
    """The event probe finds within timeout."""
    found = eventually(probe, timeout=timeout)
    assert found is not None
    return found


def web_config() -> WebConfig:
    accounts = [
        # budi reads English (the tests below read its words); wati the default, Indonesian.
        {"name": "budi", "full_name": "Budi Santoso", "role": "guard", "sites": [SITE]}
        | {"language": "en"},
        {"name": "wati", "full_name": "Wati Lestari", "role": "guard", "sites": [SITE]},
        {"name": "sari", "full_name": "Sari Dewi", "role": "guard", "sites": [OTHER]},
        {"name": "ops", "role": "operator", "sites": ["*"]},
    ]
    for a in accounts:
        a["password_hash"] = hash_password(PASSWORDS[str(a["name"])])
    return WebConfig.model_validate({"bind": "127.0.0.1:0", "accounts": accounts})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("guard-post")
    stack = Stack(root, units=DEMO_UNITS, registry_dir=registry, heartbeat_s=2)
    stack.configure_broker()
    stack.collector_identity("guard-post")
    units: dict[str, LiveAgent] = {}
    feed: PageFeed | None = None
    collector: Collector | None = None
    web: WebServer | None = None
    try:
        stack.start_servers()
        assert stack.influx is not None
        state = LiveState()
        preload(state, registry)
        state.add_unit(OTHER, "gudang-09", [("pintu-depan", "door")])
        store = EvidenceVault(root / "web" / "evidence")
        feed = PageFeed(stack, state, store)
        collector = Collector(stack, feed)
        config = web_config()
        events = EvidenceEvents(InfluxReader(stack.influx.url, DATABASE))
        web = serve(
            state, config, data_dir=root / "web", ack=collector.ack, evidence=store, events=events
        )
        for unit in DEMO_UNITS:
            units[unit.device] = LiveAgent(stack.unit_dir(unit.device) / "agent.toml").__enter__()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield Site(stack, state, store, feed, collector, web, units, browser, config)
            finally:
                browser.close()
        assert feed.errors == []
        assert state.faults == 0
    finally:
        for agent in units.values():
            agent.close()
        for part in (web, feed, collector):
            if part is not None:
                part.close() if not isinstance(part, WebServer) else part.stop()
        stack.stop_all()


def tile(page: Page, device: str) -> str:
    return f'.tile[data-device="{device}"]'


# ------------------------------------------------------------------------------------------


def test_a_logged_out_browser_gets_the_login_page(site: Site) -> None:
    with site.context() as context:
        page = context.new_page()
        for path in ("/", "/events/some-event", "/stream"):
            page.goto(f"{site.url}{path}")
            if path == "/stream":
                assert "log in first" in page.content()
                continue
            assert page.locator('input[name="password"]').is_visible()
            assert page.locator(".tile").count() == 0
        assert page.request.get(f"{site.url}/api/state").status == 401


def test_logging_out_takes_the_browser_back_to_the_login_page(site: Site) -> None:
    with site.context() as context:
        page = site.login(context, "budi")
        page.click(".logout button")
        page.wait_for_selector('input[name="password"]')
        page.goto(f"{site.url}/")
        assert page.locator('input[name="password"]').is_visible()


def test_a_door_opens_in_its_tile_within_a_second_of_the_pin_change(site: Site) -> None:
    with site.context() as context:
        page = site.login(context, "budi")
        door = f'{tile(page, "gudang-02")} [data-sensor="pintu-belakang"]'
        page.wait_for_selector(f'{door}[data-state="closed"]', timeout=10_000)
        assert page.locator(tile(page, "gudang-02")).get_attribute("data-status") == "online"
        started = time.monotonic()
        site.units["gudang-02"].set("pintu-belakang", True)
        page.wait_for_selector(f'{door}[data-state="open"]', timeout=2_000)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"the door showed open {elapsed:.2f} s after the pin changed"
        assert page.locator(f"{door} .sensor-value").inner_text() == "OPEN"
        site.close_door("gudang-02", "pintu-belakang")
        page.wait_for_selector(f'{door}[data-state="closed"]', timeout=2_000)


def test_a_forced_door_turns_the_tile_red_sounds_and_shows_its_pictures(
    site: Site, tmp_path: Path
) -> None:
    with site.context() as context:
        page = site.login(context, "budi")
        site.collector.arm(SITE)  # the retained arming state, as the collector publishes it
        page.wait_for_selector('.arming[data-arming="armed"]')
        door = site.open_door("gudang-01", "pintu-utama")
        alert = site.collector.forced_door(door)
        card = f'.alarm[data-alert-id="{alert.id}"]'
        page.wait_for_selector(f'{card}[data-state="raised"]', timeout=5_000)
        page.wait_for_selector(f"{tile(page, 'gudang-01')}.tile--raised.tile--critical")
        red = page.eval_on_selector(tile(page, "gudang-01"), "t => getComputedStyle(t).borderColor")
        assert _rgb(red)[0] > 200 and _rgb(red)[1] < 100, red
        assert "ALARM" in page.locator("#summary").inner_text()
        # The unit's camera keeps frames from before the door opened and after it: they come
        # signed by the camera event the door caused.
        camera = arrives(lambda: site.feed.camera_event_of(door.id), timeout=15)
        assert camera.snapshot_sha256
        signed = list(camera.snapshot_sha256)
        page.wait_for_selector(f'{card} a.evidence-link:has-text("all {len(signed)} pictures")')
        page.wait_for_function(
            f"""() => {{
                const imgs = [...document.querySelectorAll('{card} .alarm-pictures img')];
                return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
            }}""",
            timeout=15_000,
        )
        roles = page.locator(f"{card} .alarm-pictures figcaption").all_inner_texts()
        assert "before" in roles and "still" in roles and "after" in roles
        shown = page.locator(f"{card} .alarm-pictures img").evaluate_all(
            "imgs => imgs.map(i => i.dataset.sha256)"
        )
        assert len(shown) <= 7 and shown == [sha for sha in signed if sha in shown]
        page.wait_for_function("() => Number(document.body.dataset.beeps || 0) >= 2", timeout=5_000)
        page.wait_for_timeout(300)
        shot = tmp_path / "guard-post.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 20_000
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])
        # The evidence viewer behind the alarm: every picture, its hash, and that it verifies.
        page.click(f"{card} a.evidence-link")
        page.wait_for_selector("#verdict")
        assert page.locator("#verdict").get_attribute("data-verdict") == "vouched"
        figures = page.locator(".shot")
        assert figures.count() == len(camera.snapshot_sha256)
        for sha in camera.snapshot_sha256:
            fig = page.locator(f'.shot[data-sha256="{sha}"]')
            assert fig.get_attribute("data-verifies") == "yes"
            assert sha in fig.inner_text()
        assert f"signed by the unit in event {camera.id}" in page.locator(".shots").inner_text()
    site.close_door("gudang-01", "pintu-utama")


def test_ack_moves_the_alert_to_acknowledged_with_the_guards_name(site: Site) -> None:
    with site.context() as context:
        page = site.login(context, "budi")
        door = site.open_door("gudang-01", "pintu-utama")
        alert = site.collector.forced_door(door)
        card = f'.alarm[data-alert-id="{alert.id}"]'
        page.wait_for_selector(f'{card}[data-state="raised"]')
        # Updates keep arriving while a guard reaches for the button: it must stay the very
        # same element, or a click that straddles a redraw would be lost.
        page.eval_on_selector(f"{card} button.ack", "b => { window.ackButton = b; }")
        other = f'{tile(page, "gudang-02")} [data-sensor="pintu-belakang"]'
        site.open_door("gudang-02", "pintu-belakang")
        page.wait_for_selector(f'{other}[data-state="open"]')
        same = page.eval_on_selector(f"{card} button.ack", "b => b === window.ackButton")
        assert same and page.evaluate("() => window.ackButton.isConnected")
        page.click(f"{card} button.ack")
        page.wait_for_selector(f'{card}[data-state="acknowledged"]', timeout=5_000)
        assert "Acknowledged by Budi Santoso (budi)" in page.locator(card).inner_text()
        assert (alert.id, "Budi Santoso (budi)") in site.collector.acks
        retained = site.feed.alerts[alert.id]
        assert retained["state"] == "acknowledged"
        assert retained["acked_by"] == "Budi Santoso (budi)"
        assert page.locator(f"{card} button.ack").count() == 0
    site.close_door("gudang-01", "pintu-utama")
    site.close_door("gudang-02", "pintu-belakang")


def test_a_guard_of_another_site_neither_sees_nor_acknowledges_it(site: Site) -> None:
    door = site.open_door("gudang-01", "pintu-utama")
    alert = site.collector.forced_door(door)
    camera = arrives(lambda: site.feed.camera_event_of(door.id), timeout=15)
    assert camera.snapshot_sha256
    picture = camera.snapshot_sha256[0]
    eventually(lambda: site.store.has(picture), timeout=10)
    with site.context() as context:
        page = site.login(context, "sari")
        page.wait_for_selector(f'.site[data-site="{OTHER}"] .tile[data-device="gudang-09"]')
        assert page.locator(f'.site[data-site="{SITE}"]').count() == 0
        assert page.locator(".alarm").count() == 0
        assert "bangka" not in page.content()
    acks_before = list(site.collector.acks)
    with httpx2.Client(base_url=site.url, follow_redirects=False) as http:
        token = _field(http.get("/login").text, "token")
        answer = http.post(
            "/login", data={"name": "sari", "password": PASSWORDS["sari"], "token": token}
        )
        assert answer.status_code == 303
        csrf = _field(http.get("/").text, "csrf")
        ack = http.post(
            f"/alerts/{alert.id}/ack", data={"csrf": csrf}, headers={"Accept": "application/json"}
        )
        assert ack.status_code == 404
        assert http.get(f"/events/{door.id}").status_code == 404
        assert http.get(f"/events/{camera.id}").status_code == 404
        assert http.get(f"/pictures/{picture}.jpg").status_code == 404
        assert [s["site"] for s in http.get("/api/state").json()["sites"]] == [OTHER]
        # The live stream: her snapshot, then nothing of the other site while its door moves,
        # where the same change reaches a guard of that site (so silence means filtering).
        with httpx2.Client(base_url=site.url) as budi:
            token = _field(budi.get("/login").text, "token")
            budi.post(
                "/login", data={"name": "budi", "password": PASSWORDS["budi"], "token": token}
            )
            with Listener(site.url, http) as hers, Listener(site.url, budi) as his:
                eventually(lambda: hers.saw("event: snapshot") and his.saw("event: snapshot"))
                site.units["gudang-01"].set("pintu-utama", False)
                eventually(lambda: his.saw('"state":"closed"'), timeout=5)
                time.sleep(0.3)
        assert hers.saw(OTHER) and his.saw(SITE)
        assert not hers.saw(SITE) and not hers.saw("gudang-01"), hers.text
    assert site.collector.acks == acks_before
    eventually(lambda: site.feed.door_state("gudang-01", "pintu-utama") == "closed")


def test_the_page_reads_in_indonesian_and_switches_to_english(site: Site) -> None:
    with site.context() as context:
        login = context.new_page()
        login.goto(f"{site.url}/")
        assert login.locator("html").get_attribute("lang") == "id"
        assert login.locator('button[type="submit"]').inner_text() == "Masuk"
        page = site.login(context, "wati")
        assert page.locator("html").get_attribute("lang") == "id"
        assert page.locator(".logout button").inner_text() == "Keluar"
        expect(page.locator("#conn")).to_have_text("langsung")
        pills = page.locator("#sites .pill").all_inner_texts()
        assert pills and "ONLINE" not in pills and "TERHUBUNG" in pills, pills
        # the site's time and zone, 02:29 WIB
        expect(page.locator("#clock")).to_have_text(re.compile(r"^\d\d:\d\d WIB$"))

        page.click("#to-en")
        page.wait_for_selector('html[lang="en"] #sites .site')
        assert page.locator(".logout button").inner_text() == "Log out"
        expect(page.locator("#conn")).to_have_text("live")
        assert "ONLINE" in page.locator("#sites .pill").all_inner_texts()
        page.click("#to-id")  # and back, for the rest of this browser session
        page.wait_for_selector('html[lang="id"] #sites .site')
        assert page.locator(".logout button").inner_text() == "Keluar"


def test_the_page_reads_on_a_phone(site: Site) -> None:
    with site.context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    ) as context:
        page = site.login(context, "budi")
        page.wait_for_selector(tile(page, "pos-jaga-01"))
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow} px wider than a phone"
        boxes = [page.locator(tile(page, d.device)).bounding_box() for d in DEMO_UNITS]
        assert all(b is not None and b["width"] > 300 for b in boxes), boxes  # one tile per row
        alarms = page.locator("#alarms").bounding_box()
        first = boxes[0]
        assert alarms is not None and first is not None and alarms["y"] < first["y"]


def test_the_page_is_served_over_tls_with_the_site_ca_certificate(
    site: Site, tmp_path: Path
) -> None:
    broker_dir = site.stack.root / "broker"
    tls = {"cert": broker_dir / "server.crt", "key": broker_dir / "server.key"}
    config = WebConfig.model_validate(site.config.model_dump() | {"tls": tls})
    web = serve(site.state, config, data_dir=tmp_path, ack=site.collector.ack)
    try:
        assert web.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(site.stack.registry / "ca" / "ca.crt"))
        with httpx2.Client(base_url=web.url, verify=trust, follow_redirects=False) as http:
            form = http.get("/login")
            assert form.status_code == 200
            assert form.headers["strict-transport-security"] == "max-age=31536000"
            answer = http.post(
                "/login",
                data={
                    "name": "budi",
                    "password": PASSWORDS["budi"],
                    "token": _field(form.text, "token"),
                },
            )
            assert answer.status_code == 303
            assert re.search(r"jaga_session=.*; Secure", answer.headers["set-cookie"])
        with pytest.raises(httpx2.ConnectError), httpx2.Client(base_url=web.url) as untrusting:
            untrusting.get("/login")  # the site CA is not a public one
    finally:
        web.stop()


def test_the_viewer_reads_events_it_never_saw_from_influxdb(site: Site) -> None:
    """After a restart the page remembers nothing; evidence links still work from storage."""
    door = site.open_door("gudang-02", "pintu-belakang")
    camera = arrives(lambda: site.feed.camera_event_of(door.id), timeout=15)
    assert camera.snapshot_sha256
    eventually(lambda: all(site.store.has(s) for s in camera.snapshot_sha256 or ()), timeout=10)
    assert site.stack.influx is not None
    events = EvidenceEvents(InfluxReader(site.stack.influx.url, DATABASE))
    eventually(lambda: events.event(door.id) is not None and events.caused(door), timeout=10)
    fresh = create_app(
        LiveState(), site.config, secret=b"k" * 32, evidence=site.store, events=events
    )
    with TestClient(fresh, follow_redirects=False) as http:
        token = _field(http.get("/login").text, "token")
        http.post("/login", data={"name": "budi", "password": PASSWORDS["budi"], "token": token})
        page = http.get(f"/events/{door.id}")
        assert page.status_code == 200
        assert 'data-verdict="vouched"' in page.text
        assert f'<a href="/events/{camera.id}">' in page.text
        for sha in camera.snapshot_sha256:
            assert sha in page.text
    # `evidence export` reads through the same reader: the same camera event, the same window.
    assert [e.id for e in find_evidence_events(events, door.id)] == [camera.id]
    site.close_door("gudang-02", "pintu-belakang")


class Listener:
    """Reads /stream on a thread over a plain socket, as any HTTP client would."""

    def __init__(self, url: str, http: httpx2.Client) -> None:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.address = (host, int(port))
        self.cookie = http.cookies.get("jaga_session")
        self._data = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _read(self) -> None:
        host, port = self.address
        request = (
            f"GET /stream HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            f"Cookie: jaga_session={self.cookie}\r\n\r\n"
        )
        with socket.create_connection(self.address, timeout=0.1) as sock:
            sock.sendall(request.encode())
            while not self._stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                self._data += data

    @property
    def text(self) -> str:
        return self._data.decode(errors="replace")

    def saw(self, needle: str) -> bool:
        return needle in self.text


def _field(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def _rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return r, g, b
