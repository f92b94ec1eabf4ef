"""The Home Assistant bridge on the collector's thread (#20 at #21's scale): everything again
is spread over turns (pictures last, waiting while the session is full), a picture is only
each unit's latest still and never published before its batch is acknowledged, a panel is
worked out again only when the engine changed its site, the registry is parsed again only
where a file changed, and the state file is written only when something in it changed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from agent.config import SensorConfig
from broker.alerts.changes import Changes
from broker.alerts.config import AlertsConfig, PersonConfig
from broker.home_assistant import bridge as module
from broker.home_assistant.bridge import HomeAssistantBridge, Pace
from broker.home_assistant.codes import PanelCodes
from broker.home_assistant.config import HomeAssistantConfig
from broker.home_assistant.discovery import Panel, Unit
from broker.home_assistant.registry import Found, RegistryReader
from kernel.link import Message
from protocol.alerting import ArmingMode, ArmingState
from protocol.models import Heartbeat, Status
from provisioning.records import DeviceRecord, SiteRecord
from provisioning.registry import Registry

SITE = "bangka-barat"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
ONE_AT_A_TIME = Pace(share=0.0, min_s=0.0, max_s=0.0)
"""A slice of nothing: exactly one unit (or picture) a turn."""


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        assert retain
        self.sent.append((topic, payload))
        return True

    def take(self) -> list[tuple[str, bytes]]:
        sent, self.sent = self.sent, []
        return sent


class Engine:
    """The alert engine as the bridge asks it: each site armed, counting the look-ups."""

    def __init__(self) -> None:
        self.looked: list[str] = []
        self.modes: dict[str, ArmingMode] = {}

    def arming_state(self, site: str) -> ArmingState:
        self.looked.append(site)
        mode = self.modes.get(site, ArmingMode.DISARMED)
        return ArmingState.model_construct(site=site, state=mode, since=1)

    def open_alerts(self, site: str | None = None) -> list[object]:
        return []

    def arm(self, site: str, by: str, how: str, now: int, *, zone: str | None = None) -> Changes:
        self.modes[site] = ArmingMode.ARMED
        return Changes()


class Units:
    def __init__(self, units: list[Unit], sites: list[str]) -> None:
        self.units, self.sites, self.reads = units, sites, 0

    def read(self) -> Found:
        self.reads += 1
        panels = {s: Panel(s, s.title()) for s in self.sites}
        return Found({(u.site, u.device): u for u in self.units}, panels, changed=True)


def _unit(device: str, site: str = SITE) -> Unit:
    return Unit(site, device, (("pintu", "door"),), True)


def _bridge(
    tmp_path: Path,
    units: list[Unit],
    *,
    pace: Pace = ONE_AT_A_TIME,
    sites: list[str] | None = None,
    waiting: list[int] | None = None,
    people: dict[str, PersonConfig] | None = None,
) -> tuple[HomeAssistantBridge, Recorder]:
    sent = Recorder()
    held = waiting if waiting is not None else [0]
    b = HomeAssistantBridge(
        HomeAssistantConfig(enabled=True, registry_poll_s=3600),
        client_id="c1",
        registry_dir=tmp_path,
        data_dir=tmp_path,
        sites=None,
        alerts=AlertsConfig(),
        codes=PanelCodes(people or {}, lambda name, site: True),
        who=lambda name: name,
        publisher=sent,
        connected=lambda: True,
        connections=lambda: 1,
        picture_path=lambda sha: tmp_path / sha,
        waiting=lambda: held[0],
        pace=pace,
        registry=Units(units, sites or [SITE]),  # type: ignore[arg-type]
    )
    return b, sent


def _turn(b: HomeAssistantBridge, engine: Engine) -> None:
    b.turn(engine, lambda _c: None, lambda _d, _now: None)  # type: ignore[arg-type]


def _still(tmp_path: Path, name: str) -> str:
    sha = name * 64
    (tmp_path / sha).write_bytes(f"jpeg {name}".encode())
    return sha


def test_everything_again_is_spread_over_turns_with_the_pictures_last(tmp_path: Path) -> None:
    units = [_unit(f"gudang-0{i}") for i in range(1, 4)]
    kept = {f"{SITE}/{u.device}": _still(tmp_path, n) for u, n in zip(units, "abc", strict=True)}
    (tmp_path / "home-assistant.json").write_text(json.dumps({"pictures": kept}))
    b, sent = _bridge(tmp_path, units)  # a restarted collector: it knew their stills
    engine = Engine()
    per_turn = []
    while True:
        _turn(b, engine)
        per_turn.append([t for t, _ in sent.take()])
        if not b.republishing():
            break
    assert per_turn[0] == [  # the collector's status, then the panel first
        "jaga/ha/collector/c1/status",
        "homeassistant/alarm_control_panel/jaga_bangka-barat/panel/config",
        "jaga/ha/bangka-barat/arming",
    ]
    # One unit a turn (its discovery and state), then one picture a turn.
    assert [sorted({_device(t) for t in turn if "gudang" in t}) for turn in per_turn[1:]] == [
        ["gudang-01"],
        ["gudang-02"],
        ["gudang-03"],
        ["gudang-01"],
        ["gudang-02"],
        ["gudang-03"],
    ]
    pictures = [t for turn in per_turn for t in turn if t.endswith("/evidence")]
    assert pictures == [f"jaga/ha/bangka-barat/gudang-0{i}/evidence" for i in range(1, 4)]
    assert all(not t.endswith("/evidence") for turn in per_turn[:4] for t in turn)
    # HA's birth: all of it again, over turns as well.
    b.take(Message("homeassistant/status", b"online", 0))
    _turn(b, engine)
    assert b.republishing()
    while b.republishing():
        _turn(b, engine)
    again = sorted(t for t, _ in sent.take() if t.endswith("/config"))
    assert again == sorted(t for turn in per_turn for t in turn if t.endswith("/config"))


def _device(topic: str) -> str:
    return next(
        part.removeprefix("jaga_bangka-barat_") for part in topic.split("/") if "gudang" in part
    )


def test_a_state_that_changes_meanwhile_is_not_held_behind_the_republish(tmp_path: Path) -> None:
    units = [_unit(f"gudang-0{i}") for i in range(1, 6)]
    b, sent = _bridge(tmp_path, units)
    engine = Engine()
    _turn(b, engine)
    assert b.republishing()
    sent.take()
    b.on_messages([Status.model_construct(site=SITE, device="gudang-05", state="offline")])
    _turn(b, engine)
    states = [json.loads(p) for t, p in sent.take() if t == "jaga/ha/bangka-barat/gudang-05/state"]
    assert states and states[0]["online"] == "OFF"  # this turn, not after the other units


def test_a_republish_waits_while_the_session_has_many_publishes_unsent(tmp_path: Path) -> None:
    held = [0]
    b, sent = _bridge(tmp_path, [_unit("gudang-01"), _unit("gudang-02")], waiting=held)
    engine = Engine()
    held[0] = 5000  # paho's queue: past 65,535 its message ids wrap and it refuses publishes
    _turn(b, engine)
    _turn(b, engine)
    assert not [t for t, _ in sent.take() if "gudang" in t]
    held[0] = 0
    while b.republishing():
        _turn(b, engine)
    configs = [t for t, _ in sent.take() if t.endswith("/config")]
    assert {_device(t) for t in configs if "gudang" in t} == {"gudang-01", "gudang-02"}


def test_only_each_units_latest_still_is_published_and_after_its_batch(tmp_path: Path) -> None:
    units = [_unit("gudang-01"), _unit("gudang-02")]
    b, sent = _bridge(tmp_path, units, pace=Pace(min_s=60.0, max_s=60.0))
    engine = Engine()
    _turn(b, engine)
    assert not b.republishing()
    sent.take()
    # One batch: three stills and a frame after the trigger of one unit, a still of another.
    b.on_picture(SITE, "gudang-01", _still(tmp_path, "a"))
    b.on_picture(SITE, "gudang-01", _still(tmp_path, "b"))
    b.on_picture(SITE, "gudang-01", _still(tmp_path, "c"))
    b.on_picture(SITE, "gudang-01", _still(tmp_path, "d"), "after")
    b.on_picture(SITE, "gudang-02", _still(tmp_path, "e"))
    assert sent.take() == []  # nothing while the collector is still on the batch
    _turn(b, engine)
    assert sent.take() == [
        ("jaga/ha/bangka-barat/gudang-01/evidence", b"jpeg c"),
        ("jaga/ha/bangka-barat/gudang-02/evidence", b"jpeg e"),
    ]
    _turn(b, engine)
    assert sent.take() == []


def test_a_panel_is_worked_out_again_only_when_its_site_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sites = [SITE, "pangkal-pinang"]
    b, sent = _bridge(tmp_path, [_unit("gudang-01")], sites=sites, pace=Pace(min_s=60, max_s=60))
    engine = Engine()
    _turn(b, engine)
    assert sorted(engine.looked) == sorted(sites)
    engine.looked.clear()
    sent.take()
    for _ in range(5):
        _turn(b, engine)
    assert engine.looked == [] and sent.take() == []
    engine.modes[SITE] = ArmingMode.ARMED
    b.on_changes(Changes(arming=[engine.arming_state(SITE)]))
    engine.looked.clear()
    _turn(b, engine)
    assert engine.looked == [SITE]
    assert sent.take() == [("jaga/ha/bangka-barat/arming", b"armed_away")]
    # A change nobody told the bridge of shows at the slow refresh.
    engine.modes["pangkal-pinang"] = ArmingMode.ARMED
    _turn(b, engine)
    assert sent.take() == []
    monkeypatch.setattr(module, "PANEL_REFRESH_S", 0.0)
    _turn(b, engine)
    assert sent.take() == [("jaga/ha/pangkal-pinang/arming", b"armed_away")]
    # The slow refresh goes a batch of sites a turn.
    monkeypatch.setattr(module, "PANEL_REFRESH_BATCH", 1)
    engine.modes.clear()
    engine.looked.clear()
    _turn(b, engine)
    _turn(b, engine)
    assert engine.looked == [SITE, "pangkal-pinang"]
    assert sent.take() == [
        ("jaga/ha/bangka-barat/arming", b"disarmed"),
        ("jaga/ha/pangkal-pinang/arming", b"disarmed"),
    ]


def _registry(root: Path, devices: list[str]) -> Registry:
    reg = Registry(root)
    reg.save_site(
        SiteRecord(id=SITE, name="Gudang", timezone="Asia/Jakarta", broker_host="127.0.0.1")
    )
    for i, device in enumerate(devices):
        _save(reg, device, serial=i + 1)
    return reg


def _save(reg: Registry, device: str, serial: int, revoked: bool = False) -> None:
    door = SensorConfig(name="pintu", kind="door", pin=17)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    reg.save_device(
        DeviceRecord(site=SITE, device=device, created=now, sensors=[door], cert_serial=serial,
                     revoked_at=now if revoked else None)
    )  # fmt: skip


def test_the_registry_is_parsed_again_only_where_a_file_changed(tmp_path: Path) -> None:
    reg = _registry(tmp_path, ["gudang-01", "gudang-02", "gudang-03"])
    reader = RegistryReader(tmp_path, None)
    found = reader.read()
    assert found.changed and reader.parsed == 4  # the site and three units
    assert sorted(found.units) == [(SITE, "gudang-01"), (SITE, "gudang-02"), (SITE, "gudang-03")]
    again = reader.read()
    assert not again.changed and reader.parsed == 4 and again.units == found.units
    _save(reg, "gudang-02", serial=2, revoked=True)
    _save(reg, "gudang-04", serial=4)
    changed = reader.read()
    assert changed.changed and reader.parsed == 6  # only the two files that changed
    assert sorted(changed.units) == [(SITE, "gudang-01"), (SITE, "gudang-03"), (SITE, "gudang-04")]
    assert RegistryReader(tmp_path, frozenset({"pangkal-pinang"})).read().units == {}


def test_the_state_file_is_written_only_when_something_in_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = {"demo": PersonConfig(pin_hash=FAST.hash("482613"))}
    b, _ = _bridge(tmp_path, [_unit("gudang-01")], people=people, pace=Pace(min_s=60, max_s=60))
    engine = Engine()
    saves: list[float] = []
    save = b._save
    monkeypatch.setattr(b, "_save", lambda: saves.append(time.monotonic()) or save())
    monkeypatch.setattr(module, "SAVE_EVERY_S", 0.0)
    _turn(b, engine)
    assert len(saves) == 1  # what it announced
    for _ in range(3):
        _turn(b, engine)
    assert len(saves) == 1  # nothing changed: not written again
    # Only a heartbeat's figures: kept at the slower pace.
    beat = Heartbeat.model_construct(
        site=SITE, device="gudang-01", outbox_depth=3, disk_free_mb=900, cpu_temp_c=51.0,
        cert_days_left=300, disk_full=False, undervoltage=False, evidence_full=False,
        clock_synced=True,
    )  # fmt: skip
    b.on_messages([Status.model_construct(site=SITE, device="gudang-01", state="online")])
    _turn(b, engine)
    assert len(saves) == 2  # the unit came online: kept
    b.on_messages([beat])
    _turn(b, engine)
    assert len(saves) == 2
    monkeypatch.setattr(module, "FIGURES_SAVE_EVERY_S", 0.0)
    _turn(b, engine)
    assert len(saves) == 3
    # Wrong codes are counted in the file; a right one forgets them, and that is kept too.
    now = time.time()
    for code in ("000000", "482613"):
        body = json.dumps({"action": "ARM_AWAY", "code": code, "ts": now}).encode()
        b._decided.put(b.decide(SITE, body, now))
        b.turn(engine, lambda _c: None, lambda _d, _now: None)  # type: ignore[arg-type]
    assert len(saves) == 5
    kept = json.loads((tmp_path / "home-assistant.json").read_text())
    assert kept["codes"]["failures"] == {}


def test_the_state_file_written_piece_by_piece_reads_back_as_it_is_now(tmp_path: Path) -> None:
    units = [_unit("gudang-01"), _unit("gudang-02")]
    b, _ = _bridge(tmp_path, units, pace=Pace(min_s=60, max_s=60))
    engine = Engine()
    _turn(b, engine)
    b._save()
    b.on_messages([Status.model_construct(site=SITE, device="gudang-02", state="online")])
    b._save()
    units.pop(0)  # gudang-01 leaves the registry
    b._poll_registry(announce=True)
    b._save()
    kept = json.loads((tmp_path / "home-assistant.json").read_text())
    assert list(kept["states"]) == [f"{SITE}/gudang-02"]
    assert kept["states"][f"{SITE}/gudang-02"]["online"] is True
    assert sorted(kept["announced"]) == [f"panel:{SITE}", f"unit:{SITE}/gudang-02"]
    again, _ = _bridge(tmp_path, units)
    assert again._states == b._states and again._announced == b._announced


def test_the_wiring_lets_the_bridge_hear_every_change_the_page_hears(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from broker.collector.alerting import AlertBridge
    from broker.config import CollectorConfig
    from broker.home_assistant import wiring

    config = CollectorConfig.model_validate(
        {"registry_dir": str(tmp_path), "data_dir": str(tmp_path),
         "home_assistant": {"enabled": True}}
    )  # fmt: skip
    heard: list[object] = []
    page = SimpleNamespace(on_changes=heard.append)
    glue = AlertBridge(SimpleNamespace(link_lost=lambda: None), None, None, None, page, None)  # type: ignore[arg-type]
    collector = SimpleNamespace(
        config=config,
        session=SimpleNamespace(connections=0, publish=lambda *a, **k: True),
        stats=SimpleNamespace(connected=False),
        evidence=SimpleNamespace(path=lambda sha: tmp_path / sha),
        alerts=glue,
    )
    attached = wiring.attach(collector)  # type: ignore[arg-type]
    assert attached is not None
    try:
        changes = Changes(arming=[Engine().arming_state(SITE)])
        glue._tell(changes)  # as AlertBridge.emit and recover hand them on
        assert heard == [changes]  # the page as before
        assert attached.bridge._panels_due == {SITE}  # and the bridge
        glue.listeners.insert(0, lambda _c: 1 / 0)  # a listener's bug ...
        glue._tell(changes)  # ... stops neither the page nor the others
        assert heard == [changes, changes]
    finally:
        attached.bridge._checks.put(None)


def test_a_still_published_during_the_republish_is_not_published_again(tmp_path: Path) -> None:
    units = [_unit("gudang-01"), _unit("gudang-02")]
    kept = {f"{SITE}/{u.device}": _still(tmp_path, n) for u, n in zip(units, "ab", strict=True)}
    (tmp_path / "home-assistant.json").write_text(json.dumps({"pictures": kept}))
    b, sent = _bridge(tmp_path, units)
    engine = Engine()
    _turn(b, engine)  # the panel
    b.on_picture(SITE, "gudang-02", _still(tmp_path, "c"))  # an alarm meanwhile
    while b.republishing():
        _turn(b, engine)
    stills = [(t, p) for t, p in sent.take() if t.endswith("/evidence")]
    assert stills == [
        ("jaga/ha/bangka-barat/gudang-02/evidence", b"jpeg c"),  # at once, not after the rest
        ("jaga/ha/bangka-barat/gudang-01/evidence", b"jpeg a"),
    ]
