"""A real Home Assistant (2024.3, its own cached venv) meets Jaga through MQTT discovery (#20).

One HA start serves the whole story: every entity with its device class and device, a door
opened on a unit shown `on`, arming from HA's panel with a wrong code (refused) and the right
one (armed, recorded with the person), a screenshot of the entities in HA's own frontend,
then HA restarted and the broker restarted (every entity back with the state it had), and a
unit removed from the registry (its entities gone). The figures (install, HA start, door
latency, time back after each restart) are printed; speed is not asserted here.

No skip: without the venv the test installs it (minutes, once), and fails if it cannot.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker.home_assistant.discovery import (
    Discovery,
    Panel,
    Unit,
    node,
    panel_entity,
    unit_entities,
)
from broker.web.passwords import hash_password
from devstack.home_assistant import HomeAssistant, MqttEntry, ensure_venv
from devstack.stack import Stack
from tests.faults.fleet import close, mqtt_client, start_site
from tests.support import LiveAgent, eventually, provision, say

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),  # a first run installs Home Assistant (~6 min here), once
]

SITE = "bangka-barat"
PIN = "482613"
SCREENSHOT_ENV = "JAGA_HA_SCREENSHOT"
"""Where the README's screenshot goes (docs/home-assistant.png); by default into tmp_path."""
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip


def entity_id(d: Discovery) -> str:
    """HA's entity id of a discovered entity: its component and its slugified object_id."""
    component = d.topic.split("/")[1]
    return f"{component}.{d.config['object_id'].replace('-', '_')}"


@pytest.fixture
def stack(tmp_path: Path, registry: Path) -> Iterator[Stack]:
    """A copy of the session's registry with a Home Assistant identity, and its broker config
    (nothing started)."""
    reg = tmp_path / "registry"
    shutil.copytree(registry, reg)
    provision(reg, "identity", "add", "home-assistant", "ha", "--site", SITE)
    stack = Stack(tmp_path, registry_dir=reg, heartbeat_s=2)
    stack.configure_broker()
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def site(stack: Stack) -> Stack:
    """Broker, InfluxDB and a collector publishing for HA (the registry read every second, no
    exit delay, the operator demo's PIN)."""
    people = {"demo": {"pin_hash": hash_password(PIN)}}
    start_site(
        stack,
        {
            "home_assistant": {"enabled": True, "registry_poll_s": 1.0, "language": "en"},
            "alerts": {"default_site": {"exit_delay_s": 0}, "people": people},
        },
    )
    return stack


@pytest.fixture
def hass(site: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HomeAssistant]:
    started = time.monotonic()
    venv = ensure_venv()  # installs it if missing: InstallFailed fails the test loudly
    installed = time.monotonic() - started
    ident = site.registry / "identities"
    entry = MqttEntry(
        port=site.broker_port,
        ca=site.registry / "ca" / "ca.crt",
        cert=ident / "home-assistant-ha.crt",
        key=ident / "home-assistant-ha.key",
    )
    ha = HomeAssistant(venv, tmp_path / "ha", entry)
    started = time.monotonic()
    ha.start(timeout=180)
    say(request, f"home assistant: venv ready in {installed:.1f} s, "
                 f"started in {time.monotonic() - started:.1f} s")  # fmt: skip
    ha.onboard()
    try:
        yield ha
    finally:
        ha.stop()


def expected(stack: Stack) -> dict[str, Discovery]:
    """Every entity the collector announces for this registry, by HA entity id."""
    from provisioning.registry import Registry

    registry = Registry(stack.registry)
    found: list[Discovery] = []
    status = "jaga/ha/collector/jaga-collector-1/status"
    for s, device in registry.devices():
        record = registry.device(s, device)
        if record.revoked_at is None:
            sensors = tuple((x.name, str(x.kind)) for x in record.sensors)
            unit = Unit(s, device, sensors, record.camera)
            found += unit_entities("homeassistant", unit, status, str)
    name = registry.site(SITE).name
    found.append(panel_entity("homeassistant", Panel(SITE, name), status, str))
    return {entity_id(d): d for d in found}


def snapshot(ha: HomeAssistant, ids: set[str]) -> dict[str, str]:
    """Each entity's state: binary sensors' and the panel's as they are; a figure (CPU
    temperature, disk free: they move with each heartbeat) or a picture (its state is when it
    came) only as known or not."""
    states = ha.states()
    out = {}
    for i in ids & set(states):
        state = states[i]["state"]
        moving = i.startswith(("sensor.", "image.")) and state not in ("unavailable", "unknown")
        out[i] = "known" if moving else state
    return out


def back_as(ha: HomeAssistant, before: dict[str, str], timeout: float) -> None:
    """Wait until every entity has its state of before; fail naming the ones that do not."""
    deadline = time.monotonic() + timeout
    while (now := snapshot(ha, set(before))) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    differ = {i: (before[i], now.get(i)) for i in before if now.get(i) != before[i]}
    log = ha.config_dir / "home-assistant.log"
    if differ and "SSLEOFError" in (log.read_text() if log.exists() else ""):
        differ["why"] = ("HA's paho-mqtt 1.6.1 network thread died (SSLEOFError)", str(log))
    assert not differ, differ


def arming(stack: Stack) -> dict[str, Any]:
    """Jaga's retained arming of the site, as an operator's screen reads it."""
    got: dict[str, Any] = {}
    seen = threading.Event()
    client = mqtt_client(stack, "operator-watch", connect=False)

    def on_message(_c: object, _u: object, msg: Any) -> None:
        got.update(json.loads(msg.payload))
        seen.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(f"jaga/v1/{SITE}/arming", qos=1)
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    try:
        assert seen.wait(10), "no retained arming state for the site"
    finally:
        close(client)
    return got


def acks(stack: Stack, topics: list[str]) -> dict[str, int]:
    """The broker's PUBACK reason code for a QoS 1 publish by Home Assistant's identity to
    each topic (135: not authorized; below 128: taken)."""
    ident = stack.registry / "identities"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(
        ca_certs=str(stack.registry / "ca" / "ca.crt"),
        certfile=str(ident / "home-assistant-ha.crt"),
        keyfile=str(ident / "home-assistant-ha.key"),
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    codes: dict[int, int] = {}
    done = threading.Event()

    def on_publish(_c: object, _u: object, mid: int, rc: Any, _p: object) -> None:
        codes[mid] = rc.value
        if len(codes) == len(topics):
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    try:
        mids = {t: client.publish(t, b"probe", qos=1).mid for t in topics}
        assert done.wait(10), "no PUBACK from the broker"
    finally:
        close(client)
    return {t: codes[mid] for t, mid in mids.items()}


def test_home_assistant_writes_only_its_birth_and_its_panels_commands(stack: Stack) -> None:
    stack.start_broker()
    got = acks(
        stack,
        [
            "homeassistant/status",
            f"jaga/ha/{SITE}/cmd",
            "jaga/ha/gudang-lain/cmd",  # another site's panel: not its to command
            f"jaga/v1/{SITE}/cmd/arm",
            f"jaga/v1/{SITE}/gudang-01/cmd/snapshot",
            f"jaga/v1/{SITE}/arming",
            f"jaga/ha/{SITE}/arming",
            f"jaga/ha/{SITE}/gudang-01/state",
            "homeassistant/binary_sensor/jaga_x/door/config",
        ],
    )
    assert got.pop("homeassistant/status") < 128
    assert got.pop(f"jaga/ha/{SITE}/cmd") < 128
    assert set(got.values()) == {135}, got


def test_home_assistant_sees_every_unit_arms_with_a_code_and_survives_restarts(
    site: Stack, hass: HomeAssistant, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    want = expected(site)
    ids = set(want)

    # Every entity, with its device class and its device (one per unit, one for the site).
    def all_there() -> dict[str, dict[str, Any]] | None:
        found = hass.states()
        return found if ids <= set(found) else None

    states = eventually(all_there, timeout=60)
    for eid, d in want.items():
        attrs = states[eid]["attributes"]
        assert attrs.get("device_class") == d.config.get("device_class"), eid
        ident = hass.template(f"{{{{ device_attr(device_id('{eid}'), 'identifiers') }}}}")
        assert d.config["device"]["identifiers"][0] in ident, (eid, ident)
    panel = f"alarm_control_panel.{node(SITE).replace('-', '_')}_panel"

    # A door opened on a unit is `on` in HA.
    door = f"binary_sensor.{node(SITE, 'gudang-01').replace('-', '_')}_pintu_utama"
    with LiveAgent(site.unit_dir("gudang-01") / "agent.toml") as unit:
        eventually(lambda: hass.state(door)["state"] == "off", timeout=30)
        # The site's panel shows Jaga's arming once Jaga has one (its first event decides).
        eventually(lambda: hass.state(panel)["state"] == "disarmed", timeout=20)
        assert hass.state(panel)["attributes"]["code_format"] == "number"  # REMOTE_CODE: keypad
        opened = time.monotonic()
        unit.set("pintu-utama", True)
        eventually(lambda: hass.state(door)["state"] == "on", timeout=20)
        say(request, f"home assistant: door on in HA {time.monotonic() - opened:.2f} s after")

        # A wrong code is refused (and said so in the log); the right one arms, by `demo`.
        assert site.collector is not None
        refusals = site.collector.log_tail(100_000).count("refused: wrong code")
        hass.call("alarm_control_panel", "alarm_arm_away", {"entity_id": panel, "code": "000000"})
        eventually(
            lambda: site.collector.log_tail(100_000).count("refused: wrong code") > refusals,
            timeout=20,
        )
        assert arming(site)["state"] == "disarmed"
        assert hass.state(panel)["state"] == "disarmed"
        hass.call("alarm_control_panel", "alarm_arm_away", {"entity_id": panel, "code": PIN})
        eventually(lambda: hass.state(panel)["state"] == "armed_away", timeout=20)
        armed = arming(site)
        assert (armed["state"], armed["by"], armed["how"]) == ("armed", "demo", "mqtt")

        _screenshot(hass, request, Path(os.environ.get(SCREENSHOT_ENV, tmp_path / "ha.png")))

        # HA restarted, then the broker restarted: every entity back as it was.
        before = snapshot(hass, ids)
        assert before[door] == "on" and before[panel] == "armed_away"
        hass.stop()
        hass.start(timeout=180)
        up = time.monotonic()
        back_as(hass, before, timeout=60)
        say(request, f"home assistant: every entity back {time.monotonic() - up:.1f} s after "
                     "HA's API answered again")  # fmt: skip
        assert site.mosquitto is not None
        site.mosquitto.stop()
        site.mosquitto.start()
        up = time.monotonic()
        back_as(hass, before, timeout=60)
        say(request, f"home assistant: every entity back {time.monotonic() - up:.1f} s after "
                     "the broker took connections again")  # fmt: skip

    # A unit removed from the registry leaves HA with its entities.
    provision(site.registry, "device", "revoke", SITE, "gudang-02")
    gone = [i for i in ids if "gudang_02" in i]
    assert gone
    eventually(lambda: not set(gone) & set(hass.states()), timeout=30)


def _screenshot(ha: HomeAssistant, request: pytest.FixtureRequest, path: Path) -> None:
    """HA's own overview of the entities, in headless Chromium, into docs/ for the README."""
    from playwright.sync_api import sync_playwright

    tokens = {**ha.tokens, "hassUrl": ha.url, "clientId": "http://127.0.0.1/",
              "expires": int(time.time() * 1000) + 1_800_000}  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script(
                f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))});"
            )
            page.goto(f"{ha.url}/lovelace/0", wait_until="networkidle")
            page.wait_for_selector("hui-view", state="attached", timeout=30_000)
            page.wait_for_timeout(2000)  # cards fill in as states arrive
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    assert path.stat().st_size > 10_000, "HA's frontend drew nothing"
    say(request, f"home assistant: screenshot {path}")
