"""An alert's life: raised, repeated, acknowledged, cleared or resolved — and what opens anew."""

from __future__ import annotations

import re

import pytest

from broker.alerts import lifecycle
from broker.alerts.lifecycle import AlertClosed, ChangeKind
from broker.alerts.rules import AlertKey, Clear, Raise, Rule
from protocol import topics
from protocol.alerting import Alert, AlertState, Severity
from protocol.models import parse
from tests.unit.test_alerts_support import MON, SITE, S, jkt

T0 = jkt(MON, "22:00")
DOOR = AlertKey(Rule.FORCED_DOOR, SITE, "gudang-01", "pintu-belakang")
HELD = AlertKey(Rule.DOOR_HELD_OPEN, SITE, "gudang-01", "pintu-utama")


def raise_(key: AlertKey, at: int, *, latched: bool = False, detail: str = "d") -> Raise:
    return Raise(key, f"title of {key.rule}", detail, at, latched=latched, event_id="e1")


def opened(key: AlertKey = HELD, at: int = T0, *, latched: bool = False) -> Alert:
    return lifecycle.on_raise(None, raise_(key, at, latched=latched)).alert


def test_a_first_trigger_raises_an_alert_with_a_topic_safe_id() -> None:
    change = lifecycle.on_raise(None, raise_(DOOR, T0, latched=True))
    alert = change.alert
    assert change.kind is ChangeKind.RAISED
    assert re.fullmatch(r"forced-door-[0-9a-f]{10}", alert.id)
    assert topics.alert(SITE, alert.id) == f"jaga/v1/{SITE}/alert/{alert.id}"
    assert (alert.state, alert.count, alert.raised_at, alert.last_seen) == (
        AlertState.RAISED,
        1,
        T0,
        T0,
    )
    assert (alert.severity, alert.latched, alert.sensor) == (
        Severity.CRITICAL,
        True,
        "pintu-belakang",
    )


def test_the_id_depends_on_the_key_and_the_raise_time_only() -> None:
    assert opened(HELD, T0).id == opened(HELD, T0).id
    assert opened(HELD, T0).id != opened(HELD, T0 + 1).id
    assert opened(HELD, T0).id != opened(DOOR, T0).id


def test_a_repeated_trigger_updates_the_open_alert() -> None:
    first = opened()
    change = lifecycle.on_raise(first, raise_(HELD, T0 + 5 * S, detail="again"))
    assert change.kind is ChangeKind.REPEATED
    assert change.alert.id == first.id
    assert (change.alert.count, change.alert.last_seen, change.alert.detail) == (
        2,
        T0 + 5 * S,
        "again",
    )
    assert change.alert.raised_at == T0


def test_acknowledging_records_who_and_when_and_twice_is_nothing() -> None:
    change = lifecycle.acknowledge(opened(), "Budi", T0 + 60 * S)
    assert change is not None and change.kind is ChangeKind.ACKNOWLEDGED
    acked = change.alert
    assert (acked.state, acked.acked_by, acked.acked_at) == (
        AlertState.ACKNOWLEDGED,
        "Budi",
        T0 + 60 * S,
    )
    assert lifecycle.acknowledge(acked, "Sari", T0 + 70 * S) is None


def test_a_repeat_of_an_acknowledged_alert_keeps_it_acknowledged() -> None:
    change = lifecycle.acknowledge(opened(), "Budi", T0 + 60 * S)
    assert change is not None
    repeat = lifecycle.on_raise(change.alert, raise_(HELD, T0 + 90 * S)).alert
    assert repeat.state is AlertState.ACKNOWLEDGED and repeat.count == 2


def test_a_condition_that_goes_away_clears_the_alert() -> None:
    change = lifecycle.on_clear(opened(), Clear(HELD, "door closed", T0 + 10 * S))
    assert change is not None and change.kind is ChangeKind.CLEARED
    assert (change.alert.state, change.alert.closed_at, change.alert.closed_by) == (
        AlertState.CLEARED,
        T0 + 10 * S,
        None,
    )
    assert change.alert.note == "door closed"


def test_a_cleared_alert_that_triggers_again_opens_a_new_one() -> None:
    cleared = lifecycle.on_clear(opened(), Clear(HELD, "door closed", T0 + 10 * S))
    assert cleared is not None
    again = lifecycle.on_raise(cleared.alert, raise_(HELD, T0 + 20 * S))
    assert again.kind is ChangeKind.RAISED
    assert again.alert.id != cleared.alert.id
    assert again.alert.count == 1


def test_a_latched_alert_ignores_its_condition_going_away_until_resolved() -> None:
    alert = opened(DOOR, latched=True)
    assert lifecycle.on_clear(alert, Clear(DOOR, "door closed", T0 + S)) is None
    change = lifecycle.resolve(alert, "Sari", T0 + 600 * S, "checked: delivery")
    assert change.kind is ChangeKind.RESOLVED
    assert (change.alert.state, change.alert.closed_by, change.alert.note) == (
        AlertState.RESOLVED,
        "Sari",
        "checked: delivery",
    )
    assert (change.alert.acked_by, change.alert.acked_at) == ("Sari", T0 + 600 * S)


def test_a_closed_alert_cannot_be_acknowledged_or_resolved_again() -> None:
    resolved = lifecycle.resolve(opened(), "Sari", T0 + S).alert
    with pytest.raises(AlertClosed, match="already resolved"):
        lifecycle.acknowledge(resolved, "Budi", T0 + 2 * S)
    with pytest.raises(AlertClosed):
        lifecycle.resolve(resolved, "Budi", T0 + 2 * S)
    assert lifecycle.on_clear(resolved, Clear(HELD, "x", T0 + 3 * S)) is None


def test_the_alert_payload_round_trips_through_the_wire_parser() -> None:
    acked = lifecycle.acknowledge(opened(DOOR, latched=True), "Budi Santoso", T0 + S)
    assert acked is not None
    assert parse(Alert, acked.alert.to_json()) == acked.alert


def test_the_key_of_an_alert_is_its_rule_site_device_and_sensor() -> None:
    assert lifecycle.key_of(opened(DOOR)) == DOOR
    offline = AlertKey(Rule.UNIT_OFFLINE, SITE, "gudang-01")
    assert lifecycle.key_of(opened(offline)) == offline
    assert offline.text == "unit-offline:bangka-barat:gudang-01:-"
