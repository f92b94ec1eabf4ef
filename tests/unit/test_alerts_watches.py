"""The engine's watch keys: typed in memory, stored under the names earlier versions wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.alerts.config import AlertsConfig
from broker.alerts.engine import AlertEngine
from broker.alerts.rules import AlertKey, Rule
from broker.alerts.sensor_rules import DoorWatch
from broker.alerts.store import AlertStore, Writes
from broker.alerts.watches import WATCHED, WatchKey, WatchKind
from tests.unit.test_alerts_support import MON, SITE, jkt

UNIT = "gudang-01"
STORED = {
    "door:bangka-barat:gudang-01:pintu-utama": WatchKey(WatchKind.DOOR, SITE, UNIT, "pintu-utama"),
    "camera:bangka-barat:gudang-01:kamera": WatchKey(WatchKind.CAMERA, SITE, UNIT, "kamera"),
    "post:bangka-barat:gudang-01:patroli": WatchKey(WatchKind.POST, SITE, UNIT, "patroli"),
    "unit:bangka-barat:gudang-01": WatchKey(WatchKind.UNIT, SITE, UNIT),
    "gap:bangka-barat:gudang-01": WatchKey(WatchKind.GAP, SITE, UNIT),
    "health:bangka-barat:gudang-01": WatchKey(WatchKind.HEALTH, SITE, UNIT),
    "note:forced-door:bangka-barat:gudang-01:pintu-belakang": WatchKey.note(
        AlertKey(Rule.FORCED_DOOR, SITE, UNIT, "pintu-belakang")
    ),
    "note:unit-offline:bangka-barat:gudang-01:-": WatchKey.note(
        AlertKey(Rule.UNIT_OFFLINE, SITE, UNIT)
    ),
}


@pytest.mark.parametrize("text", sorted(STORED))
def test_a_watch_key_is_stored_under_the_name_earlier_versions_wrote(text: str) -> None:
    assert STORED[text].text == text
    assert WatchKey.parse(text) == STORED[text]


@pytest.mark.parametrize(
    "text", ["door:bangka-barat:gudang-01", "unit:bangka-barat:gudang-01:x", "lamp:a:b", "note:x"]
)
def test_a_name_that_is_no_watch_key_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        WatchKey.parse(text)


def test_a_note_watch_key_gives_back_the_alert_key_it_paces() -> None:
    alert = AlertKey(Rule.TAMPER, SITE, UNIT, "enclosure")
    key = WatchKey.note(alert)
    assert key.rule is not None
    assert key.alert(key.rule) == alert


def test_every_kind_of_watch_has_one_entry_in_the_table() -> None:
    assert set(WATCHED) == set(WatchKind)
    assert all(WATCHED[kind].kind is kind for kind in WatchKind)


def test_a_store_with_a_name_this_version_does_not_keep_still_loads(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    door = DoorWatch(open_since=jkt(MON, "12:00")).model_dump_json()
    name = "door:bangka-barat:gudang-01:pintu-utama"
    store.commit(Writes(watches={"lamp:bangka-barat:gudang-01": "{}", name: door}))
    engine = AlertEngine(AlertsConfig(), store, jkt(MON, "12:01"))
    key = WatchKey.parse(name)
    assert engine.state.watch(key, DoorWatch) == DoorWatch.model_validate_json(door)
    assert [k for k, _ in engine.state.watches()] == [key]
    store.close()
