"""Operations on the real site (#18): a bypass that holds its deadline across a collector
restart, a bypass lifted from the page (the door alarms again; the CLI refuses to lift one
that is gone), zones armed on their own, a two-person disarm that refuses one person twice, a duress
disarm that never reaches the post's page or its stream, and a person named for every action.

Real Mosquitto (mutual TLS, ACL), InfluxDB, the collector process with its page, the real Agent
of gudang-01 on simulated pins; operators act with the CLI (their certificates) and on the page
(their logins); notifications go to two webhooks on loopback (the post's and the police's).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import paho.mqtt.client as mqtt
import pytest
from argon2 import PasswordHasher
from playwright.sync_api import expect, sync_playwright

from broker.influx_reader import InfluxReader
from devstack.ports import free_port
from devstack.stack import DATABASE, DEMO_UNITS, Stack
from devstack.watch import NotificationSink
from protocol import topics
from protocol.alerting import Alert, ArmingAudit, ArmingState
from tests.faults.fleet import close, mqtt_client
from tests.integration.test_web_guard_post import CHROMIUM, CHROMIUM_ARGS
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration

SITE, UNIT = "bangka-barat", "gudang-01"
ROOM = "ruang-surat-suara"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORDS = {"ops": "ruang-kendali-9", "rina": "ruang-kendali-7", "wati": "jaga-pagi-05"}
DURESS = "2580"


@dataclass
class Site:
    stack: Stack
    unit: LiveAgent
    url: str
    post_sink: NotificationSink
    police_sink: NotificationSink
    arming: list[ArmingState] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def cli(self, *args: str) -> str:
        done = self.stack.collector_cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def zone(self, name: str) -> str:
        zone = self.arming[-1].zone(name) if self.arming else None
        return zone.state.value if zone is not None else ""

    def raised(self, rule: str) -> list[Alert]:
        return [a for a in self.alerts if a.rule == rule]

    def audits(self) -> list[ArmingAudit]:
        """The collector's audit trail as it keeps it (read-only, beside the running writer)."""
        path = self.stack.root / "collector" / "data" / "alerts.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT body FROM audit ORDER BY at, id").fetchall()
        finally:
            db.close()
        return [ArmingAudit.model_validate_json(body) for (body,) in rows]

    def stored_alerts(self) -> list[Alert]:
        path = self.stack.root / "collector" / "data" / "alerts.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT body FROM alert").fetchall()
        finally:
            db.close()
        return [Alert.model_validate_json(body) for (body,) in rows]


def web_section(port: int) -> dict[str, Any]:
    accounts = [
        {"name": "ops", "full_name": "Ops Satu", "role": "operator", "sites": [SITE]},
        {"name": "rina", "full_name": "Rina Kendali", "role": "operator", "sites": [SITE]},
        {"name": "wati", "full_name": "Wati Lestari", "role": "guard", "sites": [SITE]},
    ]
    for a in accounts:
        a["password_hash"] = CHEAP.hash(PASSWORDS[a["name"]])
    return {"bind": f"127.0.0.1:{port}", "accounts": accounts}


def alerts_section(post: str, police: str) -> dict[str, Any]:
    return {
        "sites": {
            SITE: {
                "exit_delay_s": 0,
                "entry_delay_s": 0,
                "bypass_max_min": 30,
                "zones": [
                    {"name": "perimeter", "members": [f"{UNIT}/pintu-utama"]},
                    {"name": ROOM, "members": [f"{UNIT}/lorong"], "two_person": True},
                ],
                "thresholds": {"heartbeat_s": 2},
            }
        },
        "people": {"rina": {"duress_pin_hash": CHEAP.hash(DURESS)}},
        "notify": {
            "routes": [
                {"urls": [post]},
                {"urls": [police], "severities": [], "duress": True},
            ],
            "cooldown_s": 0,
            "backoff_initial_s": 0.1,
        },
        "resume_grace_s": 0,
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Site]:
    post_sink, police_sink = NotificationSink(), NotificationSink()
    port = free_port()
    stack = Stack(
        tmp_path_factory.mktemp("operations"),
        units=DEMO_UNITS[:1],
        registry_dir=registry,
        heartbeat_s=2,
        alerts=alerts_section(post_sink.url, police_sink.url),
        web=web_section(port),
    )
    stack.configure_broker()
    watch: mqtt.Client | None = None
    try:
        stack.start_servers()
        with LiveAgent(stack.unit_dir(UNIT) / "agent.toml") as unit:
            s = Site(stack, unit, f"http://127.0.0.1:{port}", post_sink, police_sink)

            def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
                if not msg.payload:
                    return
                if msg.topic == topics.arming(SITE):
                    s.arming.append(ArmingState.model_validate_json(msg.payload))
                else:
                    s.alerts.append(Alert.model_validate_json(msg.payload))

            watch = mqtt_client(stack, "operator-watch")
            watch.on_message = on_message
            watch.subscribe([(topics.arming(SITE), 1), (f"jaga/v1/{SITE}/alert/+", 1)])
            eventually(lambda: unit.agent.publisher.stats.connected)
            eventually(lambda: s.zone(ROOM))
            yield s
    finally:
        if watch is not None:
            close(watch)
        stack.stop_all()
        post_sink.stop()
        police_sink.stop()


class Page:
    """A person logged in to the guard-post page (their own password)."""

    def __init__(self, url: str, name: str) -> None:
        self.http = httpx2.Client(base_url=url, follow_redirects=False, timeout=15)
        form = self.http.get("/login").text
        token = _field(form, "token")
        data = {"name": name, "password": PASSWORDS[name], "token": token, "next": "/"}
        assert self.http.post("/login", data=data).status_code == 303
        page = self.http.get("/").text
        self.csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]

    def post(self, path: str, **form: str) -> httpx2.Response:
        return self.http.post(
            path, data={"csrf": self.csrf, **form}, headers={"Accept": "application/json"}
        )

    def arming(self, action: str, zone: str, code: str = "") -> httpx2.Response:
        return self.post(f"/sites/{SITE}/arming", action=action, zone=zone, code=code)

    def state(self) -> dict[str, Any]:
        return dict(self.http.get("/api/state").json())

    def close(self) -> None:
        self.http.close()


def _field(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def door(site: Site, page: Page) -> str | None:
    """The front door as the page shows it."""
    for s in page.state()["sites"]:
        for u in s["units"]:
            for sensor in u["sensors"] if u["device"] == UNIT else ():
                if sensor["name"] == "pintu-utama":
                    return str(sensor["state"])
    return None


def test_a_bypass_holds_its_deadline_across_a_collector_restart(site: Site) -> None:
    assert site.stack.collector is not None
    out = site.cli("arm", SITE, "--zone", "perimeter", "--by", "demo")
    assert f"{SITE}/perimeter: armed (by demo, cli)" in out, out
    out = site.cli(
        "bypass", SITE, f"{UNIT}/pintu-utama", "--for", "25s", "--reason", "reed rusak",
        "--by", "demo",
    )  # fmt: skip
    assert f"bypassed {UNIT}/pintu-utama until" in out and "by demo: reed rusak" in out, out
    ops = Page(site.url, "ops")
    try:
        site.unit.set("pintu-utama", True)
        eventually(lambda: door(site, ops) == "open")  # recorded, signed and shown
        site.unit.set("pintu-utama", False)
        eventually(lambda: door(site, ops) == "closed")
        (bypass,) = eventually(lambda: site.arming[-1].bypassed)
        assert (bypass.by, bypass.reason, bypass.zone) == ("demo", "reed rusak", "perimeter")
        (shown,) = [b for s in ops.state()["sites"] for b in s["arming"]["bypassed"]]
        assert (shown["device"], shown["sensor"], shown["by"]) == (UNIT, "pintu-utama", "demo")
        site.stack.collector.stop()
        site.stack.collector.start(timeout=30)
        assert site.raised("forced-door") == []
        assert bypass.until > time.time_ns(), "restart slower than the bypass: lengthen it"
        eventually(lambda: not site.arming[-1].bypassed, timeout=40)  # its deadline, restarted
        assert site.zone("perimeter") == "armed"
        site.unit.set("pintu-utama", True)
        (forced,) = eventually(lambda: site.raised("forced-door"))
        site.unit.set("pintu-utama", False)
        assert forced.sensor == "pintu-utama"
        ack = ops.post(f"/alerts/{forced.id}/ack")
        assert ack.status_code == 200, ack.text
    finally:
        ops.close()
    trail = [(a.kind.value, a.by, a.how.value) for a in site.audits() if a.device == UNIT]
    assert trail == [("bypass", "demo", "cli"), ("bypass-end", "demo", "timer")]
    assert site.stack.influx is not None
    rows = InfluxReader(site.stack.influx.url, DATABASE).rows(
        f'SELECT "active", "by", "reason" FROM "bypass" WHERE "site" = \'{SITE}\''
    )
    assert [(r["active"], r["by"], r["reason"]) for r in rows] == [
        (1, "demo", "reed rusak"),
        (0, "demo", "bypass ran out"),
    ]


def test_the_perimeter_stays_armed_while_the_ballot_room_is_open(site: Site) -> None:
    ops = Page(site.url, "ops")
    try:
        assert ops.arming("disarm", "perimeter").status_code == 200  # leave the front door
        assert ops.arming("arm", "perimeter").status_code == 200
        eventually(lambda: site.zone("perimeter") == "armed" and site.zone(ROOM) == "disarmed")
        before = len(site.raised("intrusion"))
        site.unit.set("lorong", True)  # staff walk in the ballot room's corridor
        time.sleep(0.3)
        site.unit.set("lorong", False)
        time.sleep(3)  # the motion is stored and judged in well under this
        assert len(site.raised("intrusion")) == before
        guard = Page(site.url, "wati")
        try:
            refused = guard.arming("arm", ROOM)
            assert refused.status_code == 403, refused.text  # a guard watches; operators arm
        finally:
            guard.close()
        path, form = f"/sites/{SITE}/arming", {"action": "disarm", "zone": "perimeter"}
        json_ = {"Accept": "application/json"}
        forged = ops.http.post(path, data={"csrf": "x" * 43, **form}, headers=json_)
        elsewhere = ops.http.post(
            path, data={"csrf": ops.csrf, **form}, headers={**json_, "Origin": "http://evil"}
        )
        other = ops.post("/sites/pangkal-pinang/arming", **form)
        assert (forged.status_code, elsewhere.status_code, other.status_code) == (403, 403, 404)
        assert site.zone("perimeter") == "armed"
    finally:
        ops.close()


def test_a_two_person_zone_refuses_one_person_twice_and_disarms_for_two(site: Site) -> None:
    ops = Page(site.url, "ops")
    try:
        assert ops.arming("arm", ROOM).status_code == 200
        eventually(lambda: site.zone(ROOM) == "armed")
        first = ops.arming("disarm", ROOM)
        assert first.status_code == 200, first.text
        waiting = eventually(lambda: site.arming[-1].zone(ROOM).disarm_request)  # type: ignore[union-attr]
        assert waiting.by == "Ops Satu (ops)"
        shown = [z for s in ops.state()["sites"] for z in s["arming"]["zones"] if z["zone"] == ROOM]
        assert shown[0]["request_by"] == "Ops Satu (ops)"  # pending, on the page
        again = ops.arming("disarm", ROOM)
        assert again.status_code == 409 and "second, different operator" in again.text
        assert site.zone(ROOM) == "armed"
        out = site.cli("disarm", SITE, "--zone", ROOM, "--by", "demo")
        assert f"{SITE}/{ROOM}: disarmed (by demo, cli)" in out, out
    finally:
        ops.close()
    (done,) = [a for a in site.audits() if a.zone == ROOM and a.to_state.value == "disarmed"][-1:]
    assert (done.by, done.with_by) == ("demo", "Ops Satu (ops)")


def test_a_duress_disarm_is_silent_on_the_post_page_and_its_stream(site: Site) -> None:
    rina, guard = Page(site.url, "rina"), Page(site.url, "wati")
    heard: list[str] = []
    streaming = threading.Event()

    def listen() -> None:
        try:
            with guard.http.stream("GET", "/stream", timeout=60) as stream:
                streaming.set()
                for line in stream.iter_lines():
                    heard.append(line)
                    if len(heard) > 10_000 or done.is_set():
                        return
        except httpx2.HTTPError:
            if not done.is_set():
                raise

    done = threading.Event()
    listener = threading.Thread(target=listen, daemon=True)
    try:
        assert rina.arming("arm", "perimeter").status_code == 200
        eventually(lambda: site.zone("perimeter") == "armed")
        listener.start()
        assert streaming.wait(10)
        before = len(site.post_sink.received)
        forced = rina.arming("disarm", "perimeter", code=DURESS)
        assert forced.status_code == 200, forced.text
        eventually(lambda: site.zone("perimeter") == "disarmed")  # visibly, as usual
        assert site.arming[-1].zone("perimeter").by == "Rina Kendali (rina)"  # type: ignore[union-attr]
        (police,) = eventually(lambda: site.police_sink.received)
        assert "Rina Kendali (rina)" in police["title"] and "paksaan" in police["title"].lower()
        site.unit.set("pintu-utama", True)  # something the stream surely carries afterwards
        eventually(lambda: any('"open"' in line for line in heard))
        site.unit.set("pintu-utama", False)
        assert not any("duress" in line.lower() for line in heard), "duress on the stream"
        assert "duress" not in json.dumps(guard.state()).lower()
        assert "duress" not in json.dumps(rina.state()).lower()  # not even the operator's
        assert all(a.rule != "duress" for a in site.alerts)  # nor retained on MQTT
        after = site.post_sink.received[before:]
        assert not any("paksa" in json.dumps(n).lower() for n in after)  # not the post's route
    finally:
        done.set()
        rina.close()
        guard.close()
        if listener.is_alive():
            listener.join(10)
    (stored,) = [a for a in site.stored_alerts() if a.rule == "duress"]
    assert stored.params["by"] == "Rina Kendali (rina)" and stored.severity.value == "critical"


def test_an_operator_arms_and_bypasses_with_the_pages_controls(site: Site) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{site.url}/")
            page.fill('input[name="name"]', "ops")
            page.fill('input[name="password"]', PASSWORDS["ops"])
            page.click('button[type="submit"]')
            arming = page.locator("form.op-arming")
            expect(arming).to_be_visible()
            arming.locator('select[name="zone"]').select_option("perimeter")
            arming.locator('button[value="arm"]').click()
            expect(page.locator('.site [data-zone="perimeter"].zone--armed')).to_be_visible()
            bypass = page.locator("form.op-bypass")
            bypass.locator('input[name="sensor"]').fill(f"{UNIT}/pintu-utama")
            bypass.locator('select[name="minutes"]').select_option("30")
            bypass.locator('input[name="reason"]').fill("engsel longgar")
            bypass.locator('button[type="submit"]').click()
            shown = page.locator(f'.site [data-bypass="{UNIT}/pintu-utama"]')
            expect(shown).to_contain_text("Ops Satu (ops): engsel longgar")
            too_long = bypass.locator('select[name="minutes"]')
            too_long.select_option("60")  # above this site's bypass_max_min (30)
            bypass.locator('button[type="submit"]').click()
            expect(bypass.locator(".op-result.op-error")).to_contain_text("at most 30 min")
            (b,) = site.arming[-1].bypassed or ()
            assert (b.by, b.reason) == ("Ops Satu (ops)", "engsel longgar")
            shown.locator("form.op-unbypass button").click()  # repaired: lift it
            expect(shown).to_have_count(0)
        finally:
            browser.close()
    eventually(lambda: not site.arming[-1].bypassed)
    assert site.zone("perimeter") == "armed"
    (lifted,) = [a for a in site.audits() if a.kind.value == "bypass-end"][-1:]
    assert (lifted.by, lifted.how.value, lifted.sensor) == ("Ops Satu (ops)", "web", "pintu-utama")
    before = len(site.raised("forced-door"))
    site.unit.set("pintu-utama", True)  # the next opening alarms again
    eventually(lambda: len(site.raised("forced-door")) > before)
    site.unit.set("pintu-utama", False)
    done = site.stack.collector_cli("unbypass", SITE, f"{UNIT}/pintu-utama", "--by", "demo")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{UNIT}/pintu-utama is not bypassed at {SITE}" in done.stderr


def test_every_action_names_a_person(site: Site) -> None:
    people = {"demo", "Ops Satu (ops)", "Rina Kendali (rina)", "schedule", "collector"}
    trail = site.audits()
    assert {a.kind.value for a in trail} >= {"arming", "bypass", "bypass-end", "disarm-request"}
    nameless = [a for a in trail if a.by not in people or (a.with_by or "demo") not in people]
    assert not nameless, nameless
    shown = site.cli("trail", "--site", SITE).splitlines()  # the trail as people read it
    assert len(shown) == len(trail) and all(" by " in line for line in shown), shown
    assert any(f"bypass {UNIT}/pintu-utama by demo, cli: reed rusak" in line for line in shown)
    assert any("disarmed by demo (after Ops Satu (ops)), cli" in line for line in shown)
    alerts = site.stored_alerts()
    assert any(a.acked_by for a in alerts) and any(a.rule == "duress" for a in alerts)
    for a in alerts:
        assert a.acked_at is None or a.acked_by in people, a
        assert a.closed_by is None or a.closed_by in people, a
        assert a.rule != "duress" or a.params.get("by") in people, a
