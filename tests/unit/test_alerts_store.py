"""The alert store: one transaction per write, pruning that keeps what is still needed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.alerts import lifecycle
from broker.alerts.rules import AlertKey, Raise, Rule
from broker.alerts.store import AlertStore, Writes, read_alerts
from protocol.alerting import Alert, ArmingAudit, ArmingHow, ArmingMode
from tests.unit.test_alerts_support import MON, SITE, S, jkt

T0 = jkt(MON, "22:00")
DAY = 24 * 3600 * S


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.sqlite3")
    yield s
    s.close()


def alert(device: str, at: int) -> tuple[str, Alert]:
    key = AlertKey(Rule.DOOR_HELD_OPEN, SITE, device, "pintu")
    return key.text, lifecycle.on_raise(None, Raise(key, "t", "d", at)).alert


def audit(at: int, to: ArmingMode) -> ArmingAudit:
    return ArmingAudit(site=SITE, at=at, from_state=None, to_state=to, by="Budi", how=ArmingHow.CLI)


def test_pruning_forgets_old_closed_alerts_but_never_open_ones(store: AlertStore) -> None:
    key_open, still_open = alert("gudang-01", T0)
    key_closed, closed = alert("gudang-02", T0)
    closed = lifecycle.resolve(closed, "Sari", T0 + S).alert
    store.commit(
        Writes(alerts={a.id: (k, a) for k, a in [(key_open, still_open), (key_closed, closed)]})
    )
    store.prune(T0 + 40 * DAY)
    assert [a.id for a in store.alerts()] == [still_open.id]


def test_pruning_keeps_the_last_arming_record_of_each_site(store: AlertStore) -> None:
    store.commit(Writes(audits=[audit(T0, ArmingMode.ARMED), audit(T0 + S, ArmingMode.DISARMED)]))
    store.prune(T0 + 40 * DAY)
    assert [a.to_state for a in store.audits()] == [ArmingMode.DISARMED]


def test_two_open_alerts_for_one_key_are_refused_and_nothing_is_written(
    store: AlertStore,
) -> None:
    key, first = alert("gudang-01", T0)
    _, second = alert("gudang-01", T0 + S)  # same key, another id: must never both be open
    writes = Writes(
        alerts={first.id: (key, first), second.id: (key, second)},
        applied=[(SITE, "gudang-01", 1, T0)],
        outbox="{}",
    )
    with pytest.raises(sqlite3.IntegrityError):
        store.commit(writes)
    assert store.alerts() == []
    assert not store.was_applied(SITE, "gudang-01", 1)
    assert store.outbox() == []


def test_the_read_only_view_lists_open_or_all_alerts(store: AlertStore, tmp_path: Path) -> None:
    key, a = alert("gudang-01", T0)
    key2, b = alert("gudang-02", T0 + S)
    b = lifecycle.resolve(b, "Sari", T0 + 2 * S).alert
    store.commit(Writes(alerts={a.id: (key, a), b.id: (key2, b)}))
    path = tmp_path / "alerts.sqlite3"
    assert [x.id for x in read_alerts(path)] == [a.id]
    assert [x.id for x in read_alerts(path, open_only=False)] == [b.id, a.id]
