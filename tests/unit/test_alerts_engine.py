"""The engine as the collector sees it: inputs and now in, retained messages, points and
notifications out; and a restart that neither forgets nor repeats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.alerts.changes import Changes
from broker.alerts.config import AlertsConfig, DoorConfig, NotifyConfig, PostConfig, SiteAlerts
from broker.alerts.engine import AlertEngine
from broker.alerts.lifecycle import AlertClosed, AlertError, ChangeKind, UnknownAlert
from broker.alerts.store import AlertStore, Writes, read_alerts
from broker.ingest import Reason, Rejected
from broker.site_commands import SiteCommandGate
from protocol import topics
from protocol.alerting import Alert, AlertState, ArmingHow, ArmingMode, ArmingState
from protocol.commands import SiteCommand, load_pem_key, sign_command
from protocol.models import Kind, parse
from provisioning.ca import CertificateAuthority
from provisioning.certs import Validity
from provisioning.identities import revoke_identity
from provisioning.register import add_site
from provisioning.registry import Registry
from tests.unit.test_alerts_support import (
    MON,
    NIGHTS_AND_SUNDAY,
    SITE,
    TUE,
    S,
    door,
    event,
    heartbeat,
    jkt,
    status,
)

MIN = 60 * S
CONFIG = AlertsConfig(
    sites={
        SITE: SiteAlerts(
            schedule=NIGHTS_AND_SUNDAY,
            exit_delay_s=60,
            entry_delay_s=30,
            doors=[DoorConfig(device="gudang-01", sensor="pintu-utama", entry=True)],
            posts=[PostConfig(device="pos-jaga-01", sensor="patroli", every_min=30, grace_min=0)],
        )
    },
    notify=NotifyConfig(cooldown_s=300),
    resume_grace_s=30,
)
NIGHT = jkt(MON, "22:00")
NOON = jkt(MON, "12:00")


class Engines:
    """Opens engines on one store file, closing the previous one: a collector restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: AlertStore | None = None

    def open(self, now: int, config: AlertsConfig = CONFIG) -> AlertEngine:
        self.close()
        self.store = AlertStore(self.path)
        return AlertEngine(config, self.store, now)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Engines]:
    e = Engines(tmp_path / "collector" / "alerts.sqlite3")
    yield e
    e.close()


def raised(changes: Changes) -> list[Alert]:
    return [c.alert for c in changes.alerts if c.kind is ChangeKind.RAISED]


def retained(changes: Changes) -> dict[str, bytes]:
    return {m.topic: m.payload for m in changes.messages() if m.retain}


def back_door(ts: int, state: str = "open", **kw: object) -> object:
    return door(state, ts, sensor="pintu-belakang", **kw)


# the night scenario ------------------------------------------------------------------------------


def test_a_night_time_forced_door_is_one_critical_alert_one_message_one_notification(
    engines: Engines,
) -> None:
    engine = engines.open(NIGHT)
    first = engine.tick(NIGHT)
    assert [s.state for s in first.arming] == [ArmingMode.ARMED]  # scheduled night
    changes = engine.on_event(door("open", NIGHT + 5 * S, sensor="pintu-belakang"), NIGHT + 6 * S)
    (alert,) = raised(changes)
    assert (alert.rule, alert.severity, alert.device, alert.sensor) == (
        "forced-door",
        "critical",
        "gudang-01",
        "pintu-belakang",
    )
    payload = retained(changes)[topics.alert(SITE, alert.id)]
    assert parse(Alert, payload) == alert
    (note,) = changes.notifications
    # Indonesian unless its route says otherwise; the door opened at 22:00:05 WIB.
    assert (
        note.title
        == "[KRITIS] Pintu dibuka paksa di bangka-barat/gudang-01/pintu-belakang saat siaga"
    )
    assert alert.id in note.body and "dibuka pukul 22:00 WIB saat siaga" in note.body
    english = note.in_language("en")
    assert (
        english.title
        == "[CRITICAL] Forced door: bangka-barat/gudang-01/pintu-belakang opened while armed"
    )
    assert "opened at 22:00 WIB while armed" in english.body
    (point,) = [p for p in changes.points if p.measurement == "alert"]
    assert point.tags == {
        "site": SITE,
        "device": "gudang-01",
        "sensor": "pintu-belakang",
        "rule": "forced-door",
        "severity": "critical",
        "state": "raised",
    }
    assert point.fields["id"] == alert.id and point.fields["change"] == "raised"
    assert point.time_ns == NIGHT + 6 * S


def test_a_door_banging_all_night_is_one_alert_counted_and_one_notification(
    engines: Engines,
) -> None:
    engine = engines.open(NIGHT)
    notes = []
    ids = set()
    for i in range(50):
        for state in ("open", "closed"):
            t = NIGHT + (2 * i + (state == "closed")) * S
            changes = engine.on_event(back_door(t, state), t)
            notes += changes.notifications
            ids |= {c.alert.id for c in changes.alerts}
    assert len(ids) == 1 and len(notes) == 1
    (alert,) = engine.open_alerts()
    assert alert.count == 50
    later = NIGHT + 10 * MIN
    changes = engine.on_event(back_door(later), later)
    (note,) = changes.notifications
    assert "(terulang, 51 kali)" in note.title


def test_an_entry_door_goes_pending_on_the_retained_topic_and_a_disarm_in_time_is_quiet(
    engines: Engines,
) -> None:
    engine = engines.open(NIGHT)
    engine.tick(NIGHT)
    changes = engine.on_event(door("open", NIGHT + S), NIGHT + S)
    assert changes.alerts == []
    state = parse(ArmingState, retained(changes)[topics.arming(SITE)])
    assert (state.state, state.entry_device, state.until) == (
        ArmingMode.PENDING,
        "gudang-01",
        NIGHT + 31 * S,
    )
    disarm = engine.disarm(SITE, "Budi", "cli", NIGHT + 20 * S)
    assert [(a.to_state, a.by, a.how) for a in disarm.audits] == [
        (ArmingMode.DISARMED, "Budi", ArmingHow.CLI)
    ]
    assert [p.measurement for p in disarm.points] == ["arming"]
    assert engine.tick(NIGHT + 60 * S).alerts == []
    assert engine.open_alerts() == []


def test_an_entry_door_not_disarmed_in_time_is_forced_on_the_tick(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    engine.on_event(door("open", NIGHT + S), NIGHT + S)
    assert engine.tick(NIGHT + 30 * S).alerts == []
    changes = engine.tick(NIGHT + 31 * S)
    (alert,) = raised(changes)
    assert (alert.rule, alert.sensor) == ("forced-door", "pintu-utama")
    assert parse(ArmingState, retained(changes)[topics.arming(SITE)]).state is ArmingMode.ARMED


def test_a_door_opened_at_night_but_delivered_after_the_morning_disarm_still_alarms(
    engines: Engines,
) -> None:
    engine = engines.open(NIGHT)
    engine.tick(NIGHT)
    morning = jkt(TUE, "08:00")
    engine.tick(morning)
    assert engine.arming_state(SITE) is not None
    assert engine.arming_state(SITE).state is ArmingMode.DISARMED  # type: ignore[union-attr]
    changes = engine.on_event(back_door(jkt(TUE, "02:00")), morning)
    (alert,) = raised(changes)
    assert alert.detail == "opened at 02:00 WIB while armed; reported 6 h 0 min late"
    assert (alert.detail_msg, alert.params["late_for"]) == (
        "opened at {opened_at} while {mode_msg}; reported {late_for} late",
        str(6 * 3600 * S),
    )


def test_motion_at_night_is_an_intrusion_and_by_day_nothing(engines: Engines) -> None:
    engine = engines.open(NOON)
    pir = event(Kind.MOTION, "motion", NOON, sensor="lorong")
    assert engine.on_event(pir, NOON).alerts == []
    pir = event(Kind.MOTION, "motion", NIGHT, sensor="lorong")
    (alert,) = raised(engine.on_event(pir, NIGHT))
    assert alert.rule == "intrusion"


# operators ---------------------------------------------------------------------------------------


def test_ack_then_resolve_updates_then_empties_the_retained_alert(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    (alert,) = raised(engine.on_event(back_door(NIGHT), NIGHT))
    acked = engine.ack(alert.id, "Budi", NIGHT + MIN)
    body = parse(Alert, retained(acked)[topics.alert(SITE, alert.id)])
    assert (body.state, body.acked_by) == (AlertState.ACKNOWLEDGED, "Budi")
    assert acked.notifications == []
    assert engine.ack(alert.id, "Budi", NIGHT + 2 * MIN).alerts == []
    done = engine.resolve(alert.id, "Sari", NIGHT + 5 * MIN, "delivery, logged")
    assert retained(done)[topics.alert(SITE, alert.id)] == b""
    (point,) = done.points
    assert (point.tags["state"], point.fields["by"], point.fields["open"]) == (
        "resolved",
        "Sari",
        0,
    )
    (note,) = done.notifications
    assert note.title.startswith("[SELESAI]") and "delivery, logged" in note.body
    assert engine.open_alerts() == []
    assert engine.alert(alert.id) is not None


def test_operator_mistakes_are_errors_that_say_what_is_wrong(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    (alert,) = raised(engine.on_event(back_door(NIGHT), NIGHT))
    with pytest.raises(UnknownAlert, match="no alert 'nope'"):
        engine.ack("nope", "Budi", NIGHT)
    with pytest.raises(AlertError, match="operator name"):
        engine.ack(alert.id, " ", NIGHT)
    engine.resolve(alert.id, "Sari", NIGHT + S)
    with pytest.raises(AlertClosed, match="already resolved"):
        engine.ack(alert.id, "Budi", NIGHT + 2 * S)
    with pytest.raises(AlertError, match="site"):
        engine.arm("Bangka Barat", "Budi", "cli", NIGHT)
    with pytest.raises(AlertError, match="how must be"):
        engine.arm(SITE, "Budi", "sensor", NIGHT)
    with pytest.raises(AlertError):
        engine.arm(SITE, "Budi", "telepathy", NIGHT)


class Operators:
    """A registry with a CA, the site and operators budi and sari, certified in 2024."""

    def __init__(self, root: Path) -> None:
        when = datetime(2024, 1, 1, tzinfo=UTC)
        self.registry = Registry(root)
        ca = CertificateAuthority.init(self.registry, "CA", now=when)
        add_site(self.registry, SITE, name="S", timezone="Asia/Jakarta", broker_host="h")
        for name in ("budi", "sari"):
            ca.issue_service("operator", name, validity=Validity.for_days(3650, when))
            self.registry.save_operator_sites(name, [SITE])
        self.gate = SiteCommandGate.at(root, root / "collector")

    def sign(self, name: str, cmd: str, ts: int, site: str = SITE, **fields: object) -> bytes:
        reg = self.registry
        key = load_pem_key(reg.identity_path("operator", name, ".key").read_bytes())
        pem = reg.identity_path("operator", name, ".crt").read_bytes()
        body = SiteCommand(site=site, cmd=cmd, by=f"operator:{name}", ts=ts, **fields)  # type: ignore[arg-type]
        return sign_command(body, key, pem)


def test_commands_from_mqtt_arm_disarm_ack_and_resolve(engines: Engines, tmp_path: Path) -> None:
    ops = Operators(tmp_path / "registry")
    engine = engines.open(NOON)
    engine.gate = ops.gate
    armed = engine.command(SITE, "arm", ops.sign("budi", "arm", NOON, how="cli"), NOON)
    assert [(a.to_state, a.by, a.how) for a in armed.audits][-1] == (
        ArmingMode.ARMING,
        "budi",
        ArmingHow.CLI,
    )
    (alert,) = raised(engine.on_event(back_door(NOON + 2 * MIN), NOON + 2 * MIN))
    ack = ops.sign("sari", "ack", NOON + 3 * MIN, alert_id=alert.id)
    assert engine.command(SITE, "ack", ack, NOON + 3 * MIN).alerts[0].alert.acked_by == "sari"
    elsewhere = ops.sign("sari", "resolve", NOON + 4 * MIN, site="other-site", alert_id=alert.id)
    with pytest.raises(AlertError, match="may not command site other-site"):
        engine.command("other-site", "resolve", elsewhere, NOON + 4 * MIN)
    with pytest.raises(AlertError, match="not a signed command"):
        engine.command(SITE, "disarm", b'{"by":"Kapolres Budi (budi)"}', NOON + 4 * MIN)
    with pytest.raises(AlertError, match="unknown command"):
        engine.command(SITE, "selfdestruct", b'{"by":"Budi"}', NOON + 4 * MIN)
    resolve = ops.sign("sari", "resolve", NOON + 5 * MIN, alert_id=alert.id, note="drill")
    done = engine.command(SITE, "resolve", resolve, NOON + 5 * MIN)
    assert done.alerts[0].alert.note == "drill"
    disarm = ops.sign("sari", "disarm", NOON + 6 * MIN)
    with pytest.raises(AlertError, match="came as arm"):  # a signed disarm is no arm
        engine.command(SITE, "arm", disarm, NOON + 6 * MIN)
    with pytest.raises(AlertError, match="retained"):
        engine.command(SITE, "disarm", disarm, NOON + 6 * MIN, retained=True)
    disarmed = engine.command(SITE, "disarm", disarm, NOON + 6 * MIN)
    assert disarmed.audits[0].how is ArmingHow.MQTT and disarmed.audits[0].by == "sari"


def test_a_signed_unbypass_lifts_a_bypass_and_names_the_operator(
    engines: Engines, tmp_path: Path
) -> None:
    ops = Operators(tmp_path / "registry")
    engine = engines.open(NOON)
    engine.gate = ops.gate
    engine.arm(SITE, "budi", "cli", NOON - 10 * MIN)
    sensor = {"device": "gudang-01", "sensor": "pintu-belakang"}
    bypass = ops.sign("budi", "bypass", NOON, for_s=3600, reason="reed rusak", **sensor)
    assert engine.command(SITE, "bypass", bypass, NOON).arming[-1].bypassed
    lift = ops.sign("sari", "unbypass", NOON + MIN, how="cli", **sensor)
    lifted = engine.command(SITE, "unbypass", lift, NOON + MIN)
    assert not lifted.arming[-1].bypassed
    assert [(a.kind.value, a.by, a.how) for a in lifted.audits] == [
        ("bypass-end", "sari", ArmingHow.CLI)
    ]
    again = ops.sign("sari", "unbypass", NOON + 2 * MIN, **sensor)
    with pytest.raises(AlertError, match="gudang-01/pintu-belakang is not bypassed"):
        engine.command(SITE, "unbypass", again, NOON + 2 * MIN)


def test_a_signed_site_command_is_carried_out_once_even_across_a_restart(
    engines: Engines, tmp_path: Path
) -> None:
    ops = Operators(tmp_path / "registry")
    engine = engines.open(NOON)
    engine.gate = ops.gate
    disarm = ops.sign("budi", "disarm", NOON)
    engine.arm(SITE, "sari", "cli", NOON - 10 * MIN)
    assert engine.command(SITE, "disarm", disarm, NOON).audits
    engine.arm(SITE, "sari", "cli", NOON + 10 * S)
    again = SiteCommandGate.at(ops.registry.root, ops.registry.root / "collector")  # restarted
    with pytest.raises(AlertError, match="already carried out"):
        again.open(SITE, "disarm", disarm, NOON + 20 * S)
    with pytest.raises(AlertError, match="too old"):
        again.open(SITE, "disarm", ops.sign("budi", "disarm", NOON), NOON + 3 * MIN)


def test_a_revoked_operator_or_one_of_another_site_commands_nothing(tmp_path: Path) -> None:
    ops = Operators(tmp_path / "registry")
    ops.registry.save_operator_sites("sari", ["elsewhere"])
    with pytest.raises(AlertError, match="may not command site"):
        ops.gate.open(SITE, "arm", ops.sign("sari", "arm", NOON), NOON)
    stolen = ops.sign("budi", "arm", NOON)
    revoke_identity(ops.registry, "operator", "budi", now=datetime(2024, 5, 1, tzinfo=UTC))
    with pytest.raises(AlertError, match="revoked"):
        ops.gate.open(SITE, "arm", stolen, NOON)


# supervision -------------------------------------------------------------------------------------


def test_a_silent_unit_goes_offline_and_its_return_clears_then_a_new_outage_is_new(
    engines: Engines,
) -> None:
    engine = engines.open(NOON)
    t = NOON + 60 * S  # past the resume grace
    engine.on_heartbeat(heartbeat(t, interval_s=10), t)
    assert engine.tick(t + 29 * S).alerts == []
    (alert,) = raised(engine.tick(t + 30 * S))
    assert alert.rule == "unit-offline"
    back = engine.on_heartbeat(heartbeat(t + 40 * S), t + 40 * S)
    assert [c.kind for c in back.alerts] == [ChangeKind.CLEARED]
    assert retained(back)[topics.alert(SITE, alert.id)] == b""
    assert engine.on_status(status("offline"), t + 50 * S).alerts == []  # a grace to come back
    assert engine.tick(t + 53 * S - 1).alerts == []  # will_grace_s: 3 s
    (again,) = raised(engine.tick(t + 53 * S))
    assert again.id != alert.id and "last will" in again.detail


def test_a_connection_made_again_at_once_raises_nothing(engines: Engines) -> None:
    """A connection that breaks (its will) and is made again a second later (its birth)."""
    engine = engines.open(NOON)
    t = NOON + 60 * S  # past the resume grace
    units = ("gudang-01", "gudang-02", "pos-jaga-01")
    for unit in units:
        engine.on_heartbeat(heartbeat(t, device=unit), t)
    for unit in units:
        assert not engine.on_status(status("offline", device=unit), t + S)
    for n, unit in enumerate(units):  # back 1.5 to 3.5 s after its will: grace 3 s
        back = t + S + S // 2 + n * S
        assert engine.tick(back).alerts == []
        assert engine.on_status(status("online", device=unit), back).alerts == []
    for n in range(5, 31):
        changes = engine.tick(t + n * S)
        assert changes.alerts == [] and changes.notifications == [], n
    assert engine.open_alerts() == []


def test_a_broker_restart_raises_nothing_while_the_units_reconnect(engines: Engines) -> None:
    """Mosquitto publishes every unit's will as it shuts down and drops the collector too;
    a large fleet takes many seconds to reconnect. Nothing is judged while the collector has
    no broker, and then only from its reconnection plus the resume grace (30 s here)."""
    engine = engines.open(NOON)
    t = NOON + 60 * S  # past the resume grace
    units = ("gudang-01", "gudang-02", "pos-jaga-01")
    for unit in units:
        engine.on_heartbeat(heartbeat(t, device=unit), t)
    for unit in units:
        assert not engine.on_status(status("offline", device=unit), t + S)
    engine.link_lost()
    for n in range(2, 60):  # the broker is away for a minute: longer than 3 intervals
        assert engine.tick(t + n * S).alerts == [], n
    engine.link_back(t + 60 * S)
    for n, unit in enumerate(units[:2]):  # these two are back within the resume grace
        assert engine.on_status(status("online", device=unit), t + (70 + n) * S).alerts == []
    # The third never came back: judged 30 s after the last unit's return, plus 3 s.
    assert engine.tick(t + 104 * S - 1).alerts == []
    (alert,) = raised(engine.tick(t + 104 * S))
    assert alert.device == "pos-jaga-01" and "last will" in alert.detail


def test_a_long_reconnection_storm_pages_nobody_who_comes_back_and_still_finds_the_lost(
    engines: Engines,
) -> None:
    """10,000 units took 91-164 s to reconnect after a broker restart (bench.fleet): the
    grace runs while units keep coming back, and ends resume_grace_s after the last one, at
    most resume_max_s after the link returned; a unit that never returns is judged then."""
    engine = engines.open(NOON)
    t = NOON + 60 * S
    units = [f"gudang-{n:02d}" for n in range(1, 41)]
    lost = "pos-jaga-01"
    for unit in [*units, lost]:
        engine.on_heartbeat(heartbeat(t, device=unit), t)
        engine.on_status(status("offline", device=unit), t + S)
    engine.link_lost()
    back = t + 10 * S
    engine.link_back(back)
    for n, unit in enumerate(units):  # one unit every 4 s: the last is back after 160 s
        now = back + (n + 1) * 4 * S
        changes = engine.tick(now)
        assert changes.alerts == [], (unit, changes.alerts)
        assert engine.on_status(status("online", device=unit), now).alerts == []
    last = back + 160 * S
    assert engine.tick(last + 33 * S - 1).alerts == []
    (alert,) = raised(engine.tick(last + 33 * S))
    assert alert.device == lost
    assert [a.device for a in engine.open_alerts()] == [lost]


def test_a_storm_that_never_ends_holds_judgement_back_at_most_resume_max_s(
    engines: Engines,
) -> None:
    config = CONFIG.model_copy(update={"resume_max_s": 120})
    engine = engines.open(NOON, config)
    t = NOON + 60 * S
    engine.on_heartbeat(heartbeat(t, device="pos-jaga-01"), t)
    engine.on_status(status("offline", device="pos-jaga-01"), t + S)
    engine.link_lost()
    engine.link_back(t + 10 * S)
    lost: list[Alert] = []
    for n in range(1, 60):  # a unit comes back every 10 s, for ten minutes
        now = t + 10 * S + n * 10 * S
        engine.on_status(status("online", device=f"gudang-{n:02d}"), now)
        lost += raised(engine.tick(now + 5 * S))
        if lost:
            break
    (alert,) = lost
    assert alert.device == "pos-jaga-01"
    assert alert.raised_at - (t + 10 * S) <= (120 + 3 + 10) * S  # the cap, the will's grace


def test_a_will_waits_out_its_grace_across_a_collector_restart(engines: Engines) -> None:
    engine = engines.open(NOON)
    t = NOON + 60 * S
    engine.on_heartbeat(heartbeat(t), t)
    engine.on_status(status("offline"), t + S)
    assert engines.store is not None
    stored = json.loads(engines.store.watches()["unit:bangka-barat:gudang-01"])
    assert stored["will_at"] == t + S
    restart = t + 5 * S
    engine = engines.open(restart)  # its resume grace: 30 s, then will_grace_s: 3 s
    assert engine.tick(restart + 33 * S - 1).alerts == []
    (alert,) = raised(engine.tick(restart + 33 * S))
    assert "the broker lost the unit's connection (last will) 37 s ago" in alert.detail


def test_a_unit_row_stored_before_wills_were_remembered_still_loads(engines: Engines) -> None:
    engine = engines.open(NOON)
    assert engines.store is not None
    old = json.dumps({"interval_s": 60, "last_beat": NOON, "offline": False})  # no will_at
    engines.store.commit(Writes(watches={"unit:bangka-barat:gudang-01": old}))
    engine = engines.open(NOON + 60 * S)
    t = NOON + 120 * S  # past the resume grace
    assert engine.on_status(status("offline"), t).alerts == []
    assert engine.tick(t + 3 * S - 1).alerts == []  # will_grace_s: 3 s
    (alert,) = raised(engine.tick(t + 3 * S))
    assert alert.rule == "unit-offline" and "last will" in alert.detail


def test_health_from_heartbeats_warns_and_clears(engines: Engines) -> None:
    engine = engines.open(NOON)
    (alert,) = raised(engine.on_heartbeat(heartbeat(NOON, disk_free_mb=50), NOON))
    assert (alert.rule, alert.sensor, alert.severity) == ("unit-health", "disk", "warning")
    cleared = engine.on_heartbeat(heartbeat(NOON, disk_free_mb=5000), NOON + 10 * S)
    assert [c.kind for c in cleared.alerts] == [ChangeKind.CLEARED]


def test_a_signature_failure_from_the_collector_is_an_integrity_alert(engines: Engines) -> None:
    engine = engines.open(NOON)
    bad = Rejected(
        "jaga/v1/bangka-barat/gudang-02/event",
        Reason.SIGNATURE,
        "signature does not verify with the unit's key",
        b"{}",
        SITE,
        "gudang-02",
        7,
        "e7",
    )
    (alert,) = raised(engine.on_integrity(bad, NOON))
    assert (alert.rule, alert.sensor, alert.latched) == ("integrity", "bad-signature", True)
    assert engine.on_integrity(bad, NOON + S).alerts[0].alert.count == 2


def test_a_gap_that_stays_open_raises_and_its_closing_clears(engines: Engines) -> None:
    engine = engines.open(NOON)
    engine.on_gap(SITE, "gudang-01", 5, 6, "opened", NOON)
    assert engine.tick(NOON + 9 * MIN).alerts == []
    (alert,) = raised(engine.tick(NOON + 10 * MIN))
    assert (alert.rule, alert.sensor) == ("integrity", "seq-gap")
    engine.on_gap(SITE, "gudang-01", 5, 5, "closed", NOON + 11 * MIN)
    done = engine.on_gap(SITE, "gudang-01", 6, 6, "closed", NOON + 12 * MIN)
    assert [c.kind for c in done.alerts] == [ChangeKind.CLEARED]
    with pytest.raises(ValueError, match="neither"):
        engine.on_gap(SITE, "gudang-01", 1, 1, "vanished", NOON)


def test_a_missed_patrol_is_raised_on_the_tick_and_cleared_by_the_check_in(
    engines: Engines,
) -> None:
    engine = engines.open(NOON - 10 * MIN)
    press = event(Kind.PATROL, "checkin", NOON, device="pos-jaga-01", sensor="patroli")
    engine.on_event(press, NOON)
    assert engine.tick(NOON + 29 * MIN).alerts == []
    (alert,) = raised(engine.tick(NOON + 30 * MIN))
    assert (alert.rule, alert.device) == ("patrol-missed", "pos-jaga-01")
    press = event(Kind.PATROL, "checkin", NOON + 31 * MIN, device="pos-jaga-01", sensor="patroli")
    assert [c.kind for c in engine.on_event(press, NOON + 31 * MIN).alerts] == [ChangeKind.CLEARED]


def test_a_covered_camera_is_tamper_and_a_stalled_one_a_fault(engines: Engines) -> None:
    engine = engines.open(NOON)
    covered = event(Kind.CAMERA, "covered", NOON, sensor="kamera")
    assert [a.rule for a in raised(engine.on_event(covered, NOON))] == ["tamper"]
    engine.on_event(event(Kind.CAMERA, "fault", NOON, sensor="kamera"), NOON)
    (alert,) = raised(engine.tick(NOON + 60 * S))
    assert alert.rule == "camera-fault"


def test_a_door_left_open_by_day_warns_without_any_alarm(engines: Engines) -> None:
    engine = engines.open(NOON)
    assert engine.on_event(back_door(NOON), NOON).alerts == []
    (alert,) = raised(engine.tick(NOON + 120 * S))
    assert alert.rule == "door-held-open"


# restart -----------------------------------------------------------------------------------------


def test_a_restart_forgets_nothing_and_repeats_nothing(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    engine.tick(NIGHT)
    first = back_door(NIGHT + S, seq=1001)
    (alert,) = raised(engine.on_event(first, NIGHT + S))
    engine.ack(alert.id, "Budi", NIGHT + MIN)
    armed_before = engine.arming_state(SITE)

    engine = engines.open(NIGHT + 2 * MIN)  # the collector restarts
    assert [(a.id, a.state, a.acked_by) for a in engine.open_alerts()] == [
        (alert.id, AlertState.ACKNOWLEDGED, "Budi")
    ]
    assert engine.arming_state(SITE) == armed_before
    assert engine.tick(NIGHT + 2 * MIN).audits == []
    assert engine.on_event(first, NIGHT + 2 * MIN) == Changes()  # redelivered: already counted
    again = engine.on_event(back_door(NIGHT + 4 * MIN, seq=1002), NIGHT + 4 * MIN)
    assert [(c.kind, c.alert.id, c.alert.count) for c in again.alerts] == [
        (ChangeKind.REPEATED, alert.id, 2)
    ]
    assert again.notifications == []  # within the cooldown, which survived too


def test_a_resent_event_below_the_newest_is_judged_once_before_and_after_a_restart(
    engines: Engines,
) -> None:
    """The engine skips the disk look-up for seqs above the newest applied; a gap filled
    later (a resend after a broker crash) is below it and must still count, once."""
    engine = engines.open(NIGHT)
    engine.tick(NIGHT)
    (alert,) = raised(engine.on_event(back_door(NIGHT + S, seq=1005), NIGHT + S))
    late = back_door(NIGHT + 2 * S, seq=1003)
    again = engine.on_event(late, NIGHT + 3 * S)
    assert [(c.kind, c.alert.count) for c in again.alerts] == [(ChangeKind.REPEATED, 2)]
    assert engine.on_event(late, NIGHT + 4 * S) == Changes()
    engine = engines.open(NIGHT + MIN)  # the collector restarts
    assert engine.on_event(late, NIGHT + MIN) == Changes()
    assert engine.on_event(back_door(NIGHT + S, seq=1005), NIGHT + MIN) == Changes()
    fresh = engine.on_event(back_door(NIGHT + MIN, seq=1004), NIGHT + MIN)
    assert [(c.alert.id, c.alert.count) for c in fresh.alerts] == [(alert.id, 3)]


def test_a_door_open_before_a_restart_is_held_open_after_it(engines: Engines) -> None:
    engine = engines.open(NOON)
    engine.on_event(back_door(NOON), NOON)
    engine = engines.open(NOON + 60 * S)
    (alert,) = raised(engine.tick(NOON + 120 * S))
    assert alert.rule == "door-held-open"


def test_after_a_restart_old_heartbeats_do_not_make_every_unit_offline(engines: Engines) -> None:
    engine = engines.open(NOON)
    engine.on_heartbeat(heartbeat(NOON), NOON + 60 * S)
    restart = NOON + 3600 * S
    engine = engines.open(restart)
    assert engine.tick(restart + S).alerts == []
    assert engine.tick(restart + 59 * S).alerts == []  # grace 30 s + 3 x 10 s
    (alert,) = raised(engine.tick(restart + 60 * S))
    assert alert.rule == "unit-offline"


def test_a_heartbeat_that_changes_nothing_but_its_time_writes_nothing(engines: Engines) -> None:
    engine = engines.open(NOON)
    engine.on_heartbeat(heartbeat(NOON), NOON)
    assert engines.store is not None
    stored = engines.store.watches()["unit:bangka-barat:gudang-01"]
    engine.on_heartbeat(heartbeat(NOON), NOON + 10 * S)
    assert engines.store.watches()["unit:bangka-barat:gudang-01"] == stored


def test_changes_not_confirmed_before_a_crash_are_handed_back_after_it(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    changes = engine.on_event(back_door(NIGHT), NIGHT)
    assert changes.outbox_id is not None
    engine = engines.open(NIGHT + MIN)
    (pending,) = engine.pending()
    assert pending.messages() == changes.messages()
    assert pending.notifications == changes.notifications
    assert pending.points == changes.points
    engine.confirm(pending)
    assert engine.pending() == []


def test_the_snapshot_republishes_open_alerts_arming_and_clears_of_closed_ones(
    engines: Engines,
) -> None:
    engine = engines.open(NIGHT)
    engine.tick(NIGHT)
    (alert,) = raised(engine.on_event(back_door(NIGHT), NIGHT))
    (closed,) = raised(engine.on_event(door("open", NIGHT, sensor="pintu-dua"), NIGHT))
    engine.resolve(closed.id, "Sari", NIGHT + MIN)
    snapshot = engine.snapshot(NIGHT + 2 * MIN)
    snap = retained(snapshot)
    assert set(snap) == {
        topics.alert(SITE, alert.id),
        topics.alert(SITE, closed.id),
        topics.arming(SITE),
    }
    assert parse(Alert, snap[topics.alert(SITE, alert.id)]).id == alert.id
    assert snap[topics.alert(SITE, closed.id)] == b""
    assert snapshot.points == [] and snapshot.notifications == []


def test_an_engine_for_a_share_of_the_sites_judges_and_publishes_only_those(
    engines: Engines,
) -> None:
    """Collectors that split the sites (mqtt.sites): each publishes only its own sites'
    arming, even for a site its config or its store knows (another collector owns it)."""
    other = "belitung"
    config = CONFIG.model_copy(update={"sites": {**CONFIG.sites, other: CONFIG.sites[SITE]}})
    both = engines.open(NIGHT, config)
    assert {s.site for s in both.tick(NIGHT).arming} == {SITE, other}
    engines.close()
    assert engines.store is None
    engines.store = AlertStore(engines.path)  # the same store, now with a share of the sites
    mine = AlertEngine(config, engines.store, NIGHT + MIN, sites=frozenset({SITE}))
    assert mine.arming_state(other) is None
    assert {s.site for s in mine.tick(NIGHT + MIN).arming} <= {SITE}
    assert set(retained(mine.snapshot(NIGHT + MIN))) == {topics.arming(SITE)}


@dataclass(frozen=True)
class Gap:
    device: str
    first: int
    last: int
    opened_ns: int


def test_syncing_gaps_with_the_chain_book_opens_missing_ones_and_clears_stale_ones(
    engines: Engines,
) -> None:
    engine = engines.open(NOON)
    engine.on_heartbeat(heartbeat(NOON, device="gudang-02"), NOON)  # the engine knows its site
    engine.on_gap(SITE, "gudang-01", 5, 5, "opened", NOON)
    (stale,) = [a for a in raised(engine.tick(NOON + 10 * MIN)) if a.rule == "integrity"]
    synced = engine.sync_gaps([Gap("gudang-02", 7, 9, NOON)], {}, NOON + 11 * MIN)
    assert [(c.kind, c.alert.id) for c in synced.alerts] == [(ChangeKind.CLEARED, stale.id)]
    (alert,) = raised(engine.tick(NOON + 12 * MIN))  # opened at NOON: overdue at once
    assert (alert.device, alert.sensor) == ("gudang-02", "seq-gap")
    assert "seq 7-9" in alert.detail


def test_the_cli_can_read_open_alerts_while_the_collector_runs(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    (alert,) = raised(engine.on_event(back_door(NIGHT), NIGHT))
    assert [a.id for a in read_alerts(engines.path)] == [alert.id]


def test_points_become_influx_line_protocol(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    changes = engine.on_event(back_door(NIGHT), NIGHT)
    (point,) = [p for p in changes.points if p.measurement == "alert"]
    line = point.to_point().to_line_protocol()
    assert line.startswith("alert,device=gudang-01,rule=forced-door,sensor=pintu-belakang,")
    assert 'change="raised"' in line and line.endswith(str(NIGHT))


def test_changes_serialise_for_the_outbox_and_back() -> None:
    changes = Changes()
    assert not changes
    assert Changes.model_validate_json(json.dumps(changes.model_dump())) == changes


# batches -----------------------------------------------------------------------------------------


def test_a_batch_is_one_transaction_with_one_outbox_entry(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    with engine.batch() as changes:
        for i in range(100):
            inner = engine.on_event(back_door(NIGHT + i * S, seq=5000 + i), NIGHT + i * S)
            assert inner.outbox_id is None
        engine.on_event(back_door(NIGHT, seq=5000), NIGHT + 100 * S)  # a duplicate in the batch
    kinds = [c.kind for c in changes.alerts]
    assert kinds == [ChangeKind.RAISED] + [ChangeKind.REPEATED] * 99
    assert len(changes.notifications) == 1
    assert changes.outbox_id is not None
    assert engines.store is not None and len(engines.store.outbox()) == 1
    engine = engines.open(NIGHT + 200 * S)
    (alert,) = engine.open_alerts()
    assert alert.count == 100


def test_a_batch_that_fails_writes_nothing_and_forgets_what_it_did(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    with pytest.raises(RuntimeError, match="boom"), engine.batch():
        engine.on_event(back_door(NIGHT), NIGHT)
        assert len(engine.open_alerts()) == 1
        raise RuntimeError("boom")
    assert engine.open_alerts() == []
    assert engine.pending() == []
