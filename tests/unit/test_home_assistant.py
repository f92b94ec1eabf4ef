"""Home Assistant's discovery payloads, state mapping and panel codes (#20), without HA."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from broker.alerts.config import AlertsConfig, PersonConfig
from broker.home_assistant.bridge import Decision, HomeAssistantBridge, Pace
from broker.home_assistant.codes import PanelCodes
from broker.home_assistant.config import HomeAssistantConfig
from broker.home_assistant.discovery import Panel, Unit, panel_entity, unit_entities
from broker.home_assistant.registry import Found
from broker.home_assistant.state import UnitState, apply, panel_word
from kernel.link import Message
from protocol.alerting import ArmingMode

COLLECTOR = "jaga/ha/collector/c1/status"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def _unit(camera: bool = True) -> Unit:
    sensors = (("pintu", "door"), ("lorong", "motion"), ("tamper", "tamper"), ("ronda", "patrol"))
    return Unit("bangka-barat", "gudang-01", sensors, camera)


def test_every_unit_entity_names_its_device_class_device_and_both_availabilities() -> None:
    entities = {d.topic: d.config for d in unit_entities("homeassistant", _unit(), COLLECTOR, str)}
    door = entities["homeassistant/binary_sensor/jaga_bangka-barat_gudang-01/pintu/config"]
    assert door["device_class"] == "door"
    assert door["device"]["identifiers"] == ["jaga_bangka-barat_gudang-01"]
    assert door["device"]["via_device"] == "jaga_bangka-barat"
    assert [a["topic"] for a in door["availability"]] == [
        COLLECTOR,
        "jaga/v1/bangka-barat/gudang-01/status",
    ]
    assert door["availability_mode"] == "all"
    classes = sorted(str(c.get("device_class")) for c in entities.values())
    assert classes == sorted(
        ["door", "motion", "tamper", "connectivity", "problem", "None", "data_size",
         "temperature", "duration", "None"]
    )  # fmt: skip
    assert not any("ronda" in t for t in entities)  # a patrol button is no binary sensor
    connectivity = next(c for c in entities.values() if c.get("device_class") == "connectivity")
    assert connectivity["availability"] == [{"topic": COLLECTOR}]  # says offline itself
    assert len({c["unique_id"] for c in entities.values()}) == len(entities)
    no_camera = unit_entities("homeassistant", _unit(camera=False), COLLECTOR, str)
    assert not any(d.topic.startswith("homeassistant/image/") for d in no_camera)


def test_the_panel_asks_for_a_code_the_collector_checks_and_sends_when() -> None:
    d = panel_entity("homeassistant", Panel("bangka-barat", "Gudang"), COLLECTOR, str)
    assert d.topic == "homeassistant/alarm_control_panel/jaga_bangka-barat/panel/config"
    assert d.config["code"] == "REMOTE_CODE"
    assert d.config["command_topic"] == "jaga/ha/bangka-barat/cmd"
    assert d.config["supported_features"] == ["arm_away"]
    assert '"zone": null' in d.config["command_template"]
    assert "as_timestamp(now())" in d.config["command_template"]
    zoned = panel_entity("homeassistant", Panel("bangka-barat", "G", "perimeter"), COLLECTOR, str)
    assert zoned.config["state_topic"] == "jaga/ha/bangka-barat/arming/perimeter"
    assert '"zone": "perimeter"' in zoned.config["command_template"]


def _event(kind: str, sensor: str, state: str, seq: int) -> object:
    from protocol.models import Event

    return Event.model_construct(
        site="bangka-barat", device="gudang-01", sensor=sensor, kind=kind, state=state, seq=seq
    )


def test_a_late_event_never_undoes_a_newer_state() -> None:
    from protocol.models import Kind

    unit = UnitState()
    assert apply(unit, _event(Kind.DOOR, "pintu", "open", 7))  # type: ignore[arg-type]
    assert unit.document()["sensors"]["pintu"] == "ON"
    assert not apply(unit, _event(Kind.DOOR, "pintu", "closed", 5))  # type: ignore[arg-type]
    assert unit.document()["sensors"]["pintu"] == "ON"
    assert apply(unit, _event(Kind.CAMERA, "camera", "fault", 8))  # type: ignore[arg-type]
    assert unit.document()["problem"] == "ON" and unit.problems() == ["camera"]


def test_the_panel_is_triggered_only_while_an_unacknowledged_intrusion_is_open() -> None:
    from protocol.alerting import Alert

    intrusion = Alert.model_construct(rule="intrusion", state=_open(), acked_at=None)
    acked = Alert.model_construct(rule="intrusion", state=_open(), acked_at=1)
    assert panel_word(ArmingMode.ARMED, [intrusion]) == "triggered"
    assert panel_word(ArmingMode.ARMED, [acked]) == "armed_away"
    assert panel_word(ArmingMode.DISARMED, [intrusion]) == "disarmed"
    assert panel_word(None, []) is None


def _open() -> object:
    from protocol.alerting import AlertState

    return next(s for s in AlertState if s.is_open)


def test_a_code_names_the_person_who_may_act_and_wrong_codes_lock_the_site() -> None:
    people = {
        "demo": PersonConfig(pin_hash=FAST.hash("482613")),
        "sari": PersonConfig(pin_hash=FAST.hash("111222"), duress_pin_hash=FAST.hash("999000")),
    }
    codes = PanelCodes(
        people, lambda name, site: site == "bangka-barat" or name == "sari", max_failures=3
    )
    assert codes.check("bangka-barat", "482613").account == "demo"
    duress = codes.check("bangka-barat", "999000")
    assert (duress.account, duress.duress) == ("sari", True)  # the engine is told, silently
    assert codes.check("pangkal-pinang", "482613").account is None  # demo may not act there
    assert codes.check("bangka-barat", "000000").reason == "wrong code"
    assert codes.check("bangka-barat", "").account is None
    assert codes.check("bangka-barat", "482613").account == "demo"  # two failures: not yet
    assert codes.check("bangka-barat", "000001").account is None
    locked = codes.check("bangka-barat", "482613")
    assert locked.account is None and "too many" in locked.reason


# the bridge, with a recording publisher, a recording engine and a registry of two units -------


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        self.sent.append((topic, payload, retain))
        return True

    def topics(self) -> list[str]:
        return [t for t, _, _ in self.sent]


class Engine:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str, str | None]] = []

    def arming_state(self, site: str) -> None:
        return None

    def open_alerts(self, site: str | None = None) -> list[object]:
        return []

    def arm(self, site: str, by: str, how: str, now: int, *, zone: str | None = None) -> object:
        from broker.alerts.changes import Changes

        self.calls.append(("arm", site, by, str(how), zone))
        return Changes()

    def disarm(self, site: str, by: str, how: str, now: int, **kw: object) -> object:
        from broker.alerts.changes import Changes

        self.calls.append(("disarm", site, by, str(how), kw.get("zone")))  # type: ignore[arg-type]
        self.judged = kw.get("judged")
        assert "code" not in kw  # the engine is told which PIN it was, never the PIN
        return Changes()


def _bridge(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    units: list[Unit],
    alerts: AlertsConfig | None = None,
) -> tuple[HomeAssistantBridge, Recorder]:
    people = {
        "demo": PersonConfig(pin_hash=FAST.hash("482613"), duress_pin_hash=FAST.hash("700700"))
    }
    sent = Recorder()
    b = HomeAssistantBridge(
        HomeAssistantConfig(enabled=True, registry_poll_s=0.01),
        client_id="c1",
        registry_dir=tmp_path,
        data_dir=tmp_path,
        sites=None,
        alerts=alerts or AlertsConfig(),
        codes=PanelCodes(people, lambda name, site: True),
        who=lambda name: f"Demo ({name})",
        publisher=sent,
        connected=lambda: True,
        connections=lambda: 1,
        picture_path=lambda sha: tmp_path / sha,
        registry=Units(units),  # type: ignore[arg-type]
        pace=Pace(min_s=60.0, max_s=60.0),  # everything again within one turn, however loaded
    )
    return b, sent


class Units:
    """The registry as the bridge reads it (registry.RegistryReader), from a list a test
    changes: every read says it changed."""

    def __init__(self, units: list[Unit]) -> None:
        self.units = units

    def read(self) -> Found:
        panels = {"bangka-barat": Panel("bangka-barat", "Gudang")}
        return Found({(u.site, u.device): u for u in self.units}, panels, changed=True)


def _turn(b: HomeAssistantBridge, engine: Engine, audits: list[Decision] | None = None) -> None:
    kept = audits if audits is not None else []
    b.turn(engine, lambda _c: None, lambda d, _now: kept.append(d))  # type: ignore[arg-type]


def test_home_assistants_birth_brings_every_entity_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, sent = _bridge(tmp_path, monkeypatch, [_unit()])
    engine = Engine()
    _turn(b, engine)
    first = sorted(t for t in sent.topics() if t.endswith("/config"))
    assert len(first) == 11  # 10 of the unit, 1 panel
    sent.sent.clear()
    _turn(b, engine)
    assert not [t for t in sent.topics() if t.endswith("/config")]  # nothing changed
    b.take(Message("homeassistant/status", b"offline", 0))
    _turn(b, engine)
    assert not [t for t in sent.topics() if t.endswith("/config")]
    b.take(Message("homeassistant/status", b"online", 0))
    _turn(b, engine)
    assert sorted(t for t in sent.topics() if t.endswith("/config")) == first


def test_a_removed_unit_has_every_entity_and_state_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Unit("bangka-barat", "gudang-02", (("pintu", "door"),), False)
    units = [_unit(), other]
    b, sent = _bridge(tmp_path, monkeypatch, units)
    _turn(b, Engine())
    announced = [t for t in sent.topics() if "gudang-02" in t and t.endswith("/config")]
    sent.sent.clear()
    units.remove(other)
    time.sleep(0.02)
    _turn(b, Engine())
    emptied = {t for t, payload, retain in sent.sent if payload == b"" and retain}
    assert set(announced) <= emptied
    assert "jaga/ha/bangka-barat/gudang-02/state" in emptied
    assert not any("gudang-01" in t for t in emptied)


def test_the_right_code_arms_in_the_persons_name_and_a_wrong_or_stale_one_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, _ = _bridge(tmp_path, monkeypatch, [_unit()])
    engine, audits = Engine(), list[Decision]()
    now = time.time()

    def command(code: str, ts: float, action: str = "ARM_AWAY") -> bytes:
        return json.dumps({"action": action, "code": code, "zone": None, "ts": ts}).encode()

    for payload in (command("000000", now), command("482613", now - 3600), b"{not json"):
        b._decided.put(b.decide("bangka-barat", payload, now))
    b._decided.put(b.decide("bangka-barat", command("482613", now), now))
    _turn(b, engine, audits)
    assert audits[0].reason == "wrong code"
    assert "too old" in audits[1].reason and "not a panel command" in audits[2].reason
    assert engine.calls == [("arm", "bangka-barat", "Demo (demo)", "mqtt", None)]
    assert b.take(Message("jaga/ha/bangka-barat/cmd", command("1", now), 1, retain=True))
    assert b._checks.empty()  # a retained command is never carried out


def test_a_site_with_zones_has_one_panel_per_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zones = [{"name": "perimeter", "members": ["gudang-01/pintu"]}]
    alerts = AlertsConfig.model_validate({"sites": {"bangka-barat": {"zones": zones}}})
    b, sent = _bridge(tmp_path, monkeypatch, [_unit()], alerts)
    _turn(b, Engine())
    panels = sorted(t for t in sent.topics() if "alarm_control_panel" in t)
    assert panels == [
        "homeassistant/alarm_control_panel/jaga_bangka-barat/panel_default/config",
        "homeassistant/alarm_control_panel/jaga_bangka-barat/panel_perimeter/config",
    ]


def test_a_duress_pin_from_home_assistant_disarms_and_tells_the_engine_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broker.alerts.people import CodeKind

    b, _ = _bridge(tmp_path, monkeypatch, [_unit()])
    engine, now = Engine(), time.time()
    body = {"action": "DISARM", "code": "700700", "zone": None, "ts": now}
    b._decided.put(b.decide("bangka-barat", json.dumps(body).encode(), now))
    _turn(b, engine)
    assert engine.calls == [("disarm", "bangka-barat", "Demo (demo)", "mqtt", None)]
    assert engine.judged is CodeKind.DURESS


def test_a_command_whose_time_is_not_a_number_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, _ = _bridge(tmp_path, monkeypatch, [_unit()])
    now = time.time()
    for ts in ("NaN", '"nan"', "Infinity"):
        payload = f'{{"action": "ARM_AWAY", "code": "482613", "ts": {ts}}}'.encode()
        decision = b.decide("bangka-barat", payload, now)
        assert decision.account is None, ts  # no age check can pass a time that is no number


def test_a_duress_pin_in_home_assistant_takes_as_many_checks_as_the_disarm_pin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from broker.home_assistant import codes as module

    checks: list[str] = []
    verify = module.verify_password
    monkeypatch.setattr(module, "verify_password", lambda h, c: checks.append(h) or verify(h, c))
    people = {
        "demo": PersonConfig(pin_hash=FAST.hash("482613"), duress_pin_hash=FAST.hash("700700"))
    }
    codes = PanelCodes(people, lambda name, site: True)
    assert codes.check("bangka-barat", "482613").account == "demo"
    pin_checks, checks[:] = len(checks), []
    assert codes.check("bangka-barat", "700700").duress
    assert len(checks) == pin_checks


def test_only_operators_codes_act_on_a_site_as_on_the_page(tmp_path: Path) -> None:
    from broker.home_assistant.wiring import operator_may_act
    from broker.web.config import Account, Role

    hashed = FAST.hash("x")
    accounts = {
        "budi": Account(
            name="budi", role=Role.GUARD, sites=("bangka-barat",), password_hash=hashed
        ),
        "sari": Account(
            name="sari", role=Role.OPERATOR, sites=("bangka-barat",), password_hash=hashed
        ),
        "rina": Account(name="rina", role=Role.OPERATOR, password_hash=hashed),
    }

    def may(name: str, site: str) -> bool:
        return operator_may_act(accounts, tmp_path, name, site)

    assert not may("budi", "bangka-barat")  # a guard sees the site but never arms it
    assert may("sari", "bangka-barat") and not may("sari", "pangkal-pinang")
    assert may("rina", "pangkal-pinang")  # an operator of every site
    assert not may("nobody", "bangka-barat")


def test_wrong_codes_pause_the_keypad_longer_each_time_until_a_right_code(tmp_path: Path) -> None:
    clock = [1_000.0]
    people = {"demo": PersonConfig(pin_hash=FAST.hash("482613"))}
    codes = PanelCodes(
        people, lambda n, s: True, max_failures=2, lockout_s=60, clock=lambda: clock[0]
    )
    assert codes.check("bangka-barat", "1").paused_s == 0
    assert codes.check("bangka-barat", "2").paused_s == 60  # the one that pauses says so
    clock[0] += 59
    assert "too many" in codes.check("bangka-barat", "482613").reason  # not even the right one
    clock[0] += 2
    codes.check("bangka-barat", "3")
    assert codes.check("bangka-barat", "4").paused_s == 120  # twice as long the second time
    clock[0] += 119
    assert codes.check("bangka-barat", "482613").account is None
    clock[0] += 2
    assert codes.check("bangka-barat", "482613").account == "demo"
    codes.succeeded("bangka-barat")
    codes.check("bangka-barat", "5")
    assert codes.check("bangka-barat", "6").paused_s == 60  # a right code forgot the pauses


def test_a_paused_keypad_stays_paused_after_a_restart_and_alerts_the_control_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broker.alerts.engine import AlertEngine
    from broker.alerts.store import AlertStore
    from broker.home_assistant.wiring import paused_alert

    b, _ = _bridge(tmp_path, monkeypatch, [_unit()])
    now = time.time()
    wrong = json.dumps({"action": "DISARM", "code": "000000", "ts": now}).encode()
    for _ in range(5):
        b._decided.put(b.decide("bangka-barat", wrong, now))
    audits: list[Decision] = []
    _turn(b, Engine(), audits)
    assert [bool(d.paused_s) for d in audits] == [False] * 4 + [True]
    # The collector restarts: a new bridge and new PanelCodes read the state file.
    again, _ = _bridge(tmp_path, monkeypatch, [_unit()])
    right = json.dumps({"action": "DISARM", "code": "482613", "ts": now}).encode()
    refused = again.decide("bangka-barat", right, now)
    assert refused.account is None and "too many" in refused.reason

    store = AlertStore(tmp_path / "alerts.sqlite3")
    try:
        engine = AlertEngine(AlertsConfig(), store, time.time_ns())
        changes = paused_alert(engine, audits[-1], 5, time.time_ns())
        [raised] = [c.alert for c in changes.alerts]
        assert (raised.rule, raised.site, raised.latched) == (
            "panel-code-refused",
            "bangka-barat",
            True,
        )
        assert str(raised.severity) == "warning" and "300 s" in raised.detail
        assert [a.rule for a in engine.open_alerts("bangka-barat")] == ["panel-code-refused"]
    finally:
        store.close()


def test_a_duress_pin_on_a_paused_keypad_is_refused_alike_but_tells_the_police(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broker.alerts.changes import Changes
    from broker.alerts.engine import AlertEngine
    from broker.alerts.store import AlertStore

    b, _ = _bridge(tmp_path, monkeypatch, [_unit()])
    now = time.time()

    def disarm(code: str) -> Decision:
        body = json.dumps({"action": "DISARM", "code": code, "ts": now}).encode()
        return b.decide("bangka-barat", body, now)

    for _ in range(5):
        disarm("000000")
    right, forced = disarm("482613"), disarm("700700")
    assert right.account is None and "too many" in right.reason and right.duress_of is None
    assert (forced.account, forced.reason, forced.duress) == (None, right.reason, False)
    assert forced.duress_of == "demo"
    store = AlertStore(tmp_path / "alerts.sqlite3")
    try:
        engine = AlertEngine(AlertsConfig(), store, time.time_ns())
        emitted: list[Changes] = []
        audits: list[Decision] = []
        for d in (right, forced):
            b._decided.put(d)
        b.turn(engine, emitted.append, lambda d, _now: audits.append(d))
        assert [d.reason for d in audits] == [right.reason] * 2  # the audit tells no difference
        [note] = [n for c in emitted for n in c.notifications]
        assert note.key.startswith("duress:") and note.severity == "critical"
        [alert] = store.alerts()
        assert (alert.rule, alert.params["by"]) == ("duress", "Demo (demo)")
        assert not [m for c in emitted for m in c.messages() if "/alert/" in m.topic]  # silent
    finally:
        store.close()


def test_our_late_will_says_everything_again_but_the_last_sessions_retained_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: the retained "offline" a stop or crash left, delivered as the new
    session subscribes, restarted the republish the first turns had begun (everything twice
    at every start); a will published late, live, still means HA must hear it all again."""
    b, sent = _bridge(tmp_path, monkeypatch, [_unit()])
    engine = Engine()
    _turn(b, engine)
    sent.sent.clear()
    b.take(Message(COLLECTOR, b"offline", 1, retain=True))
    _turn(b, engine)
    assert not [t for t in sent.topics() if t.endswith("/config")]
    b.take(Message(COLLECTOR, b"offline", 1))
    _turn(b, engine)
    assert len([t for t in sent.topics() if t.endswith("/config")]) == 11
