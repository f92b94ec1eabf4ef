"""Every alarm at a unit with a camera reaches the phone with its own trigger's still, also when
one trigger happens inside another's capture and the unit does not know the site is armed.

The unit's idea of "armed" is the last arming state it heard; the collector's is its own. They
differ for a while after each change (the retained message is on its way, the unit is offline,
its clock is off), and the collector judges a late event by the arming history. Seen in `make
demo`: gudang-02's door opened, its PIR fired a second later, the collector raised forced-door
and intrusion, but the unit (not yet guarding in its view) kept pictures for the door only; the
intrusion's picture never came. Here the unit is deterministically behind: it is offline while
the site is armed, its door opens, its PIR fires 1 s later, its lid is opened and its lens
covered; then it comes back and sends it all. Each alarm's notification must bring the still
signed for its own trigger, byte for byte as stored.

Real Mosquitto (mutual TLS), InfluxDB and the collector process; the real Agent of gudang-01
on simulated pins and its simulated camera; the phone is a loopback webhook that apprise's
json:// posts to (devstack.watch.NotificationSink).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest

from agent.camera.simulated import SimulatedCamera
from broker.evidence_events import EvidenceEvents
from broker.influx_reader import InfluxReader
from devstack.demo import demo_alerts
from devstack.ports import free_port
from devstack.stack import DATABASE, DEMO_UNITS, Stack
from devstack.watch import NotificationSink, SiteWatch
from protocol import models, topics
from protocol.alerting import Alert, ArmingMode, ArmingState
from protocol.models import Event, Kind
from tests.faults.fleet import close, mqtt_client, write_agent_toml
from tests.support import LiveAgent, eventually, say

pytestmark = pytest.mark.integration
UNIT = "gudang-01"
ALARMS = {
    ("forced-door", "pintu-utama"): (Kind.DOOR, "open"),
    ("intrusion", "lorong"): (Kind.MOTION, "motion"),
    ("tamper", "tamper"): (Kind.TAMPER, "tampered"),  # the enclosure's lid
    ("tamper", "camera"): (Kind.CAMERA, "covered"),  # the lens painted over
}
"""Each alarm (rule, sensor) the unit's trigger (kind, state) raises."""


def _collector_armed(stack: Stack) -> bool:
    """The site's retained arming state says armed (the exit delay is over)."""
    heard: list[ArmingState] = []
    client = mqtt_client(stack, "operator-demo", connect=False)
    client.on_message = lambda _c, _u, msg: heard.append(
        models.parse(ArmingState, bytes(msg.payload))
    )
    client.on_connect = lambda c, *_: c.subscribe(topics.arming(stack.site), qos=1)
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    try:
        eventually(lambda: heard, timeout=10)
    finally:
        close(client)
    return heard[-1].state is ArmingMode.ARMED


def _stored(live: LiveAgent) -> list[Event]:
    """The unit's events waiting in its outbox (all of them: it is offline)."""
    return [
        models.parse(Event, p.payload)
        for p in live.agent.outbox.pending(limit=10_000)
        if p.topic.endswith("/event")
    ]


def _triggers(live: LiveAgent) -> list[Event]:
    """The triggers of ALARMS, once all are stored."""
    wanted = set(ALARMS.values())
    found = [e for e in _stored(live) if (e.kind, e.state) in wanted]
    return found if len(found) == len(wanted) else []


def _alarms(watch: SiteWatch) -> dict[tuple[str, str], Alert]:
    """The unit's alarms by (rule, sensor), once every one of ALARMS is raised."""
    found = {(a.rule, a.sensor or ""): a for a in watch.raised().values() if a.device == UNIT}
    return found if set(ALARMS) <= set(found) else {}


def _pictures(sink: NotificationSink, alert_ids: set[str], timeout: float) -> dict[str, bytes]:
    """The picture each alert's notification brought, by alert id: once all have come, or
    whatever has come by the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = {alert_id: data for _, alert_id, data in sink.pictures()}
        if alert_ids <= set(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_every_alarm_of_a_unit_behind_on_arming_gets_its_own_triggers_still(
    tmp_path: Path, registry: Path, request: pytest.FixtureRequest
) -> None:
    sink = NotificationSink()
    stack = Stack(
        tmp_path, units=DEMO_UNITS, registry_dir=registry, heartbeat_s=2,
        alerts=demo_alerts(sink.url),
    )  # fmt: skip
    stack.configure_broker()
    watch: SiteWatch | None = None
    started = time.monotonic()
    try:
        stack.start_servers()
        watch = SiteWatch(stack.registry, stack.broker_port, stack.site).start()
        armed = stack.collector_cli("arm", stack.site, "--by", "demo")
        assert armed.returncode == 0, armed.stderr
        eventually(lambda: _collector_armed(stack), timeout=30)

        # The unit, offline: nothing listens where its broker should be.
        config = stack.unit_dir(UNIT) / "agent.toml"
        offline = stack.unit_dir(UNIT) / "agent-offline.toml"
        shutil.copy(config, offline)
        write_agent_toml(offline, **{"broker.port": free_port()})
        with LiveAgent(offline) as live:
            assert not live.agent.armed  # it never heard the site armed
            live.set("pintu-utama", True)
            time.sleep(1.0)  # the PIR fires inside the door's capture
            live.set("lorong", True)
            live.set("tamper", True)
            camera = live.agent.camera.camera if live.agent.camera else None
            assert isinstance(camera, SimulatedCamera)
            camera.cover()
            triggers = eventually(lambda: _triggers(live), timeout=30)
            assert {e.sensor for e in triggers} == {sensor for _, sensor in ALARMS}
            live.close(drain_s=0.5)  # the camera completes the sets of triggers it has seen

        # Back online: everything goes; the collector judges it by the arming history.
        with LiveAgent(config):
            alarms = eventually(lambda: _alarms(watch), timeout=60)
            wanted = {alarms[alarm].id for alarm in ALARMS}
            pictured = _pictures(sink, wanted, timeout=60)
        missing = sorted(alarm for alarm in ALARMS if alarms[alarm].id not in pictured)
        assert not missing, f"notified without their picture: {missing}"
        assert stack.influx is not None
        events = EvidenceEvents(InfluxReader(stack.influx.url, DATABASE))
        vault = stack.root / "collector" / "data" / "evidence"
        for (rule, sensor), _ in ALARMS.items():
            alert = alarms[rule, sensor]
            assert alert.event_id is not None
            trigger = events.event(alert.event_id)
            assert trigger is not None and trigger.sensor == sensor
            data = pictured[alert.id]
            sha = hashlib.sha256(data).hexdigest()
            # The still signed for this very trigger: in the camera event whose cause it is.
            caused = [e for e in events.signing(trigger) if e.cause == trigger.id]
            assert caused, f"no camera event names the {rule} trigger as its cause"
            assert sha in {h for e in caused for h in e.snapshot_sha256 or ()}
            assert data == (vault / f"{sha}.jpg").read_bytes()
    finally:
        if watch is not None:
            watch.stop()
        stack.stop_all()
        sink.stop()
    say(request, f"phone, every alarm pictured: {time.monotonic() - started:.0f} s")
