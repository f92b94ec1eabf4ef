"""Replayed and forged commands against the real site (issue 14, findings 4 and 18): an operator
certificate may publish site commands, but only signed, fresh, never-seen ones are carried out,
by the name in the certificate; a unit carries out a signed command once, and a year-old one
not even while its clock is unsynchronised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from broker.operator import signed
from devstack.stack import DEMO_UNITS, Stack
from protocol import topics
from protocol.commands import CommandResult, Resend, load_pem_key, sign_command
from tests.faults.fleet import close, mqtt_client, start_site
from tests.support import LiveAgent, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SITE, GOOD = "bangka-barat", "gudang-01"
YEAR_NS = 365 * 24 * 3600 * 10**9


@dataclass
class Site:
    stack: Stack
    good: LiveAgent
    watch: mqtt.Client
    """operator:watch: publishes what an attacker holding an operator certificate would."""
    arming: list[dict[str, object]] = field(default_factory=list)
    results: list[CommandResult] = field(default_factory=list)

    def state(self) -> str:
        return str(self.arming[-1]["state"]) if self.arming else ""

    def cli(self, *args: str) -> str:
        done = self.stack.collector_cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.watch.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def refusals(self) -> int:
        assert self.stack.collector is not None
        return self.stack.collector.log_tail(1_000_000).count("refused")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Site]:
    stack = Stack(tmp_path_factory.mktemp("signed"), units=DEMO_UNITS[:1], registry_dir=registry)
    stack.configure_broker()
    try:
        start_site(stack)
        watch = mqtt_client(stack, "operator-watch")
        with LiveAgent(stack.unit_dir(GOOD) / "agent.toml") as good:
            s = Site(stack, good, watch)

            def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
                if msg.topic == topics.arming(SITE) and msg.payload:
                    s.arming.append(json.loads(msg.payload))
                elif msg.topic.endswith("/cmd-result"):
                    s.results.append(CommandResult.model_validate_json(msg.payload))

            watch.on_message = on_message
            watch.subscribe(
                [(topics.arming(SITE), 1), (topics.DeviceTopics(SITE, GOOD).cmd_result, 1)]
            )
            eventually(lambda: good.agent.publisher.stats.connected)
            yield s
        close(watch)
    finally:
        stack.stop_all()


def armed(site: Site) -> None:
    assert "(by demo" in site.cli("arm", SITE, "--by", "demo")
    eventually(lambda: site.state() in ("arming", "armed"))


def demo_signs(site: Site, name: str) -> bytes:
    ident = site.stack.registry / "identities"
    return signed(ident / "operator-demo.crt", ident / "operator-demo.key", SITE, name, "demo")  # type: ignore[arg-type]


def test_a_plain_json_disarm_under_any_name_is_not_carried_out(site: Site) -> None:
    armed(site)
    refused = site.refusals()
    site.publish(topics.site_cmd(SITE, "disarm"), b'{"by":"Kapolres Budi (budi)","how":"mqtt"}')
    eventually(lambda: site.refusals() > refused)
    time.sleep(0.5)
    assert site.state() in ("arming", "armed")
    assert all(a["by"] != "Kapolres Budi (budi)" for a in site.arming)


def test_a_recorded_signed_disarm_replayed_is_refused(site: Site) -> None:
    armed(site)
    disarm = demo_signs(site, "disarm")
    site.publish(topics.site_cmd(SITE, "disarm"), disarm)
    eventually(lambda: site.state() == "disarmed")
    assert site.arming[-1]["by"] == "demo"  # the certificate's name, not a typed one
    armed(site)
    refused = site.refusals()
    site.publish(topics.site_cmd(SITE, "disarm"), disarm)  # the same bytes again
    eventually(lambda: site.refusals() > refused)
    time.sleep(0.5)
    assert site.state() in ("arming", "armed")


def test_a_retained_disarm_is_not_carried_out_again_when_the_collector_restarts(
    site: Site,
) -> None:
    assert site.stack.collector is not None
    armed(site)
    site.publish(topics.site_cmd(SITE, "disarm"), demo_signs(site, "disarm"), retain=True)
    try:
        eventually(lambda: site.state() == "disarmed")
        armed(site)
        site.stack.collector.stop()
        site.stack.collector.start(timeout=30)  # (re)subscribes: the broker hands it the retained
        time.sleep(2)
        assert site.state() in ("arming", "armed"), "the retained disarm was carried out again"
    finally:
        site.publish(topics.site_cmd(SITE, "disarm"), b"", retain=True)


def _result_after(site: Site, count: int) -> CommandResult:
    found = eventually(lambda: site.results[count] if len(site.results) > count else None)
    assert found is not None
    return found


def test_a_unit_carries_out_a_signed_command_once(site: Site) -> None:
    ident = site.stack.registry / "identities"
    key = load_pem_key((ident / "operator-demo.key").read_bytes())
    cmd = Resend(by="operator:demo", ts=time.time_ns(), first_seq=1, last_seq=1)
    payload = sign_command(cmd, key, (ident / "operator-demo.crt").read_bytes())
    topic = topics.DeviceTopics(SITE, GOOD).cmd("resend")
    count = len(site.results)
    site.publish(topic, payload)
    assert _result_after(site, count).detail.startswith("requeued")
    site.publish(topic, payload)
    again = _result_after(site, count + 1)
    assert not again.ok and "already carried out" in again.detail, again


def test_a_year_old_resend_is_refused_even_with_an_unsynchronised_clock(site: Site) -> None:
    agent = site.good.agent
    agent.clock = replace(agent.clock, synced=lambda: False)  # no NTP yet (hardware boundary)
    ident = site.stack.registry / "identities"
    key = load_pem_key((ident / "operator-demo.key").read_bytes())
    fresh = Resend(by="operator:demo", ts=time.time_ns(), first_seq=1, last_seq=1)
    count = len(site.results)
    site.publish(  # a unit that has accepted one command knows time has reached it
        topics.DeviceTopics(SITE, GOOD).cmd("resend"),
        sign_command(fresh, key, (ident / "operator-demo.crt").read_bytes()),
    )
    _result_after(site, count)
    old = Resend(by="operator:demo", ts=time.time_ns() - YEAR_NS, first_seq=1, last_seq=1)
    count = len(site.results)
    site.publish(
        topics.DeviceTopics(SITE, GOOD).cmd("resend"),
        sign_command(old, key, (ident / "operator-demo.crt").read_bytes()),
    )
    result = _result_after(site, count)
    assert not result.ok and "older than a newer one" in result.detail, result
