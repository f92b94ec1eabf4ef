"""Operations on a site's panel (#18): zones armed on their own, a bypass that runs out (also
across a restart), two-person disarm, a duress PIN, and a person named for every action."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from broker.alerts.changes import Changes
from broker.alerts.config import (
    AlertsConfig,
    NotifyConfig,
    PersonConfig,
    Route,
    SiteAlerts,
    Window,
)
from broker.alerts.config import ZoneConfig as Zone
from broker.alerts.delivery import urls_for
from broker.alerts.engine import AlertEngine
from broker.alerts.lifecycle import AlertError
from broker.alerts.operations import Operation
from broker.alerts.people import CodeKind
from broker.alerts.store import AlertStore
from kernel.config import ConfigError, load_toml_model
from protocol.alerting import ArmingMode, ArmingState, AuditKind, Severity
from protocol.models import Kind
from tests.unit.test_alerts_support import MON, NIGHTS_AND_SUNDAY, SITE, TUE, S, door, event, jkt

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PIN, DURESS = "4711", "9110"
SITE_ALERTS = SiteAlerts(
    exit_delay_s=0,
    entry_delay_s=0,
    bypass_max_min=240,
    zones=[
        Zone(name="perimeter", members=["gudang-01/pintu-utama", "pagar-01"]),
        Zone(name="ruang-surat-suara", members=["gudang-01/pintu-ruang"], two_person=True),
    ],
)
CONFIG = AlertsConfig(
    sites={SITE: SITE_ALERTS},
    notify=NotifyConfig(
        cooldown_s=0,
        routes=[
            Route(urls=["json://localhost:9/post"]),
            Route(urls=["json://localhost:9/polisi"], severities=[], duress=True),
        ],
    ),
    people={
        "budi": PersonConfig(duress_pin_hash=CHEAP.hash(DURESS)),
        "sari": PersonConfig(pin_hash=CHEAP.hash(PIN), duress_pin_hash=CHEAP.hash(DURESS)),
    },
)
T0 = jkt(MON, "22:00")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.sqlite3")
    yield s
    s.close()


def wire(changes: Changes) -> ArmingState:
    assert changes.arming, "the retained arming message should have changed"
    return changes.arming[-1]


def zone_state(engine: AlertEngine, zone: str) -> ArmingMode:
    state = engine.arming_state(SITE)
    assert state is not None
    found = state.zone(zone)
    assert found is not None
    return found.state


def rules(changes: Changes) -> list[str]:
    return [c.alert.rule for c in changes.alerts]


def test_the_perimeter_stays_armed_while_staff_open_the_ballot_room(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    armed = engine.arm(SITE, "budi", "cli", T0, zone="perimeter")
    assert [(z.zone, z.state) for z in wire(armed).zones or ()] == [
        ("default", ArmingMode.DISARMED),
        ("perimeter", ArmingMode.ARMED),
        ("ruang-surat-suara", ArmingMode.DISARMED),
    ]
    assert wire(armed).state is ArmingMode.ARMED  # the most guarding zone, for the units
    inside = engine.on_event(door("open", T0 + S, sensor="pintu-ruang"), T0 + S)
    assert rules(inside) == []
    fence = engine.on_event(door("open", T0 + 2 * S, device="pagar-01", sensor="p1"), T0 + 2 * S)
    assert rules(fence) == ["forced-door"]  # a whole unit listed: every sensor of it
    outside = engine.on_event(door("open", T0 + 3 * S), T0 + 3 * S)
    assert rules(outside) == ["forced-door"]


def test_a_site_without_zones_is_one_default_zone_as_before(store: AlertStore) -> None:
    engine = AlertEngine(AlertsConfig(), store, T0)
    armed = wire(engine.arm(SITE, "budi", "cli", T0))
    assert [z.zone for z in armed.zones or ()] == ["default"]
    assert (armed.state, armed.by) == (ArmingMode.ARMING, "budi")
    assert rules(engine.on_event(door("open", T0 + 61 * S), T0 + 61 * S)) == ["forced-door"]


def test_arming_a_site_arms_every_zone_and_an_unknown_zone_is_refused(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "budi", "cli", T0)
    assert {zone_state(engine, z) for z in SITE_ALERTS.zone_names()} == {ArmingMode.ARMED}
    with pytest.raises(AlertError, match="no zone 'gudang'"):
        engine.arm(SITE, "budi", "cli", T0, zone="gudang")


def test_a_bypassed_door_opens_without_alarm_until_its_deadline(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "budi", "cli", T0)
    by = engine.bypass(
        SITE, "gudang-01", "pintu-utama", "budi", "cli", T0, for_s=3600, reason="reed rusak"
    )
    (bypass,) = wire(by).bypassed or ()
    assert (bypass.by, bypass.zone, bypass.until) == ("budi", "perimeter", T0 + 3600 * S)
    assert [(a.kind, a.by, a.reason) for a in by.audits] == [
        (AuditKind.BYPASS, "budi", "reed rusak")
    ]
    assert [p.measurement for p in by.points] == ["bypass"]
    assert rules(engine.on_event(door("open", T0 + 60 * S), T0 + 60 * S)) == []
    ended = engine.tick(T0 + 3601 * S)
    assert [(a.kind, a.how.value) for a in ended.audits] == [(AuditKind.BYPASS_END, "timer")]
    assert not wire(ended).bypassed
    late = T0 + 3602 * S
    assert rules(engine.on_event(door("open", late), late)) == ["forced-door"]


def test_a_lifted_bypass_ends_at_once_and_the_next_opening_alarms(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "budi", "cli", T0)
    engine.bypass(
        SITE, "gudang-01", "pintu-utama", "budi", "cli", T0, for_s=3600, reason="reed rusak"
    )
    assert rules(engine.on_event(door("open", T0 + 60 * S), T0 + 60 * S)) == []
    lifted = engine.unbypass(SITE, "gudang-01", "pintu-utama", "sari", "web", T0 + 120 * S)
    assert [(a.kind, a.by, a.how.value, a.device, a.sensor) for a in lifted.audits] == [
        (AuditKind.BYPASS_END, "sari", "web", "gudang-01", "pintu-utama")
    ]
    assert "sari" in lifted.audits[0].reason
    assert not wire(lifted).bypassed  # the retained state (what the unit's siren reads)
    assert zone_state(engine, "perimeter") is ArmingMode.ARMED
    assert [a.kind for a in store.audits(SITE)][-1] is AuditKind.BYPASS_END
    soon = T0 + 121 * S
    assert rules(engine.on_event(door("open", soon), soon)) == ["forced-door"]
    assert not engine.tick(T0 + 3601 * S).audits  # nothing left to run out


def test_lifting_a_bypass_that_does_not_exist_is_refused(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "budi", "cli", T0)
    with pytest.raises(AlertError, match=r"^gudang-01/pintu-utama is not bypassed at "):
        engine.unbypass(SITE, "gudang-01", "pintu-utama", "sari", "cli", T0 + S)
    engine.bypass(SITE, "pagar-01", "p1", "budi", "cli", T0, for_s=60, reason="angin")
    engine.tick(T0 + 61 * S)  # ran out already
    with pytest.raises(AlertError, match="pagar-01/p1 is not bypassed"):
        engine.unbypass(SITE, "pagar-01", "p1", "sari", "cli", T0 + 62 * S)
    with pytest.raises(AlertError, match="device"):
        engine.unbypass(SITE, "Pagar 01", "p1", "sari", "cli", T0 + 62 * S)
    op = Operation(action="unbypass", site=SITE, by="sari", account="sari", device="pagar-01")
    with pytest.raises(AlertError, match="device/sensor"):
        op.apply(engine, T0 + 63 * S)


def test_a_bypass_holds_its_deadline_across_a_restart(tmp_path: Path) -> None:
    first = AlertStore(tmp_path / "alerts.sqlite3")
    engine = AlertEngine(CONFIG, first, T0)
    engine.arm(SITE, "budi", "cli", T0, zone="perimeter")
    engine.bypass(SITE, "gudang-01", "pintu-utama", "budi", "cli", T0, for_s=600, reason="rusak")
    first.close()
    again = AlertStore(tmp_path / "alerts.sqlite3")
    try:
        restarted = AlertEngine(CONFIG, again, T0 + 60 * S)
        assert rules(restarted.on_event(door("open", T0 + 61 * S), T0 + 61 * S)) == []
        ended = restarted.tick(T0 + 601 * S)
        assert [a.kind for a in ended.audits] == [AuditKind.BYPASS_END]
        at = T0 + 602 * S
        assert rules(restarted.on_event(door("open", at), at)) == ["forced-door"]
    finally:
        again.close()


def test_a_disarm_of_its_zone_ends_a_bypass_and_the_longest_bypass_is_capped(
    store: AlertStore,
) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "andi", "cli", T0, zone="perimeter")
    with pytest.raises(AlertError, match="at most 240 min"):
        engine.bypass(
            SITE, "gudang-01", "pintu-utama", "andi", "cli", T0, for_s=5 * 3600, reason="x"
        )
    with pytest.raises(AlertError, match="needs a reason"):
        engine.bypass(SITE, "gudang-01", "pintu-utama", "andi", "cli", T0, for_s=60, reason=" ")
    engine.bypass(SITE, "gudang-01", "pintu-utama", "andi", "cli", T0, for_s=3600, reason="rusak")
    disarmed = engine.disarm(SITE, "andi", "cli", T0 + S, zone="perimeter")
    assert [(a.kind, a.by) for a in disarmed.audits] == [
        (AuditKind.ARMING, "andi"),
        (AuditKind.BYPASS_END, "andi"),
    ]
    assert not wire(disarmed).bypassed
    engine.arm(SITE, "andi", "cli", T0 + 2 * S, zone="perimeter")
    assert rules(engine.on_event(door("open", T0 + 3 * S), T0 + 3 * S)) == ["forced-door"]


def test_a_two_person_zone_disarms_only_when_a_second_person_asks_in_time(
    store: AlertStore,
) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    room = "ruang-surat-suara"
    engine.arm(SITE, "andi", "cli", T0, zone=room)
    first = engine.disarm(SITE, "Andi (andi)", "web", T0 + S, zone=room, account="andi")
    asked = wire(first).zone(room)
    assert asked is not None and asked.state is ArmingMode.ARMED and asked.two_person
    assert asked.disarm_request is not None and asked.disarm_request.by == "Andi (andi)"
    with pytest.raises(AlertError, match="a second, different operator"):
        engine.disarm(SITE, "andi", "cli", T0 + 2 * S, zone=room)  # the same person by the CLI
    assert zone_state(engine, room) is ArmingMode.ARMED
    second = engine.disarm(SITE, "dewi", "cli", T0 + 30 * S, zone=room)
    (audit,) = [a for a in second.audits if a.kind is AuditKind.ARMING]
    assert (audit.to_state, audit.by, audit.with_by) == (ArmingMode.DISARMED, "dewi", "Andi (andi)")


def test_a_two_person_request_runs_out_after_60_s(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    room = "ruang-surat-suara"
    engine.arm(SITE, "andi", "cli", T0, zone=room)
    engine.disarm(SITE, "andi", "cli", T0, zone=room)
    ran_out = engine.tick(T0 + 61 * S)
    assert [(a.kind, a.by) for a in ran_out.audits] == [(AuditKind.DISARM_REQUEST_END, "andi")]
    late = engine.disarm(SITE, "dewi", "cli", T0 + 62 * S, zone=room)
    assert zone_state(engine, room) is ArmingMode.ARMED  # dewi is now the first of two
    assert [a.kind for a in late.audits] == [AuditKind.DISARM_REQUEST]


def test_a_duress_pin_disarms_as_usual_and_tells_only_the_duress_routes(
    store: AlertStore,
) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "budi", "cli", T0, zone="perimeter")
    forced = engine.disarm(
        SITE, "Budi (budi)", "web", T0 + S, zone="perimeter", code=DURESS, account="budi"
    )
    assert zone_state(engine, "perimeter") is ArmingMode.DISARMED
    (audit,) = forced.audits
    assert (audit.by, audit.reason) == ("Budi (budi)", "disarmed by hand")  # as usual
    assert forced.alerts == [] and all(p.measurement != "alert" for p in forced.points)
    assert all("/alert/" not in m.topic for m in forced.messages())
    (note,) = forced.notifications
    assert note.key.startswith("duress:") and note.severity is Severity.CRITICAL
    assert urls_for(CONFIG.notify, SITE, note.severity, duress=True) == [
        "json://localhost:9/polisi"
    ]
    assert "json://localhost:9/polisi" not in urls_for(CONFIG.notify, SITE, Severity.CRITICAL)
    (stored,) = [a for a in store.alerts() if a.rule == "duress"]
    assert stored.params["by"] == "Budi (budi)" and stored.latched
    snapshot = engine.snapshot(T0 + 2 * S)
    assert all(c.alert.rule != "duress" for c in snapshot.alerts)


def test_a_wrong_pin_or_a_missing_one_is_refused(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "sari", "cli", T0, zone="perimeter")
    with pytest.raises(AlertError, match="must give their PIN"):
        engine.disarm(SITE, "sari", "cli", T0 + S, zone="perimeter")
    with pytest.raises(AlertError, match="wrong PIN"):
        engine.disarm(SITE, "sari", "cli", T0 + S, zone="perimeter", code="0000")
    with pytest.raises(AlertError, match="wrong PIN"):
        engine.disarm(SITE, "budi", "cli", T0 + S, zone="perimeter", code=PIN)  # sari's, not his
    assert zone_state(engine, "perimeter") is ArmingMode.ARMED
    engine.disarm(SITE, "sari", "cli", T0 + S, zone="perimeter", code=PIN)
    assert zone_state(engine, "perimeter") is ArmingMode.DISARMED
    assert [a.rule for a in store.alerts()] == []


def test_every_operation_is_recorded_with_who(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    room = "ruang-surat-suara"
    engine.arm(SITE, "budi", "cli", T0)
    engine.bypass(SITE, "pagar-01", "p1", "budi", "cli", T0, for_s=60, reason="angin")
    engine.disarm(SITE, "andi", "cli", T0 + S, zone=room)
    engine.disarm(SITE, "dewi", "web", T0 + 2 * S, zone=room)
    engine.disarm(SITE, "budi", "cli", T0 + 3 * S, zone="perimeter", code=DURESS)
    raised = engine.on_event(event(Kind.MOTION, "motion", T0 + 4 * S, sensor="pir"), T0 + 4 * S)
    engine.ack(raised.alerts[0].alert.id, "dewi", T0 + 5 * S)
    engine.tick(T0 + 120 * S)
    people = {"andi", "budi", "dewi", "schedule", "collector"}
    audits = store.audits(SITE)
    assert {a.kind for a in audits} >= {
        AuditKind.ARMING,
        AuditKind.BYPASS,
        AuditKind.BYPASS_END,
        AuditKind.DISARM_REQUEST,
    }
    assert {a.by for a in audits} <= people, [a for a in audits if a.by not in people]
    for alert in store.alerts():
        assert alert.acked_at is None or alert.acked_by in people
        if alert.rule == "duress":
            assert alert.params["by"] in people


def test_a_zone_member_that_is_no_sensor_is_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "alerts.toml"
    bad.write_text('[[sites.s.zones]]\nname = "perimeter"\nmembers = ["gudang 01"]\n')
    with pytest.raises(ConfigError, match="not a unit or a sensor"):
        load_toml_model(bad, AlertsConfig)


def test_a_zone_follows_its_own_schedule_and_the_others_the_sites(store: AlertStore) -> None:
    office = [Window(days=["mon", "tue", "wed", "thu", "fri"], start="20:00", end="06:00")]
    zoned = SiteAlerts(
        exit_delay_s=0,
        schedule=NIGHTS_AND_SUNDAY,  # 18:00-07:00
        zones=[Zone(name="kantor", members=["kantor-01"], schedule=office)],
    )
    engine = AlertEngine(AlertsConfig(sites={SITE: zoned}), store, jkt(MON, "12:00"))
    engine.tick(jkt(MON, "18:00:01"))
    assert (zone_state(engine, "default"), zone_state(engine, "kantor")) == (
        ArmingMode.ARMED,
        ArmingMode.DISARMED,
    )
    engine.tick(jkt(MON, "20:00:01"))
    assert zone_state(engine, "kantor") is ArmingMode.ARMED
    engine.tick(jkt(TUE, "06:30"))
    assert (zone_state(engine, "default"), zone_state(engine, "kantor")) == (
        ArmingMode.ARMED,
        ArmingMode.DISARMED,
    )


@pytest.mark.parametrize(
    ("zones", "said"),
    [
        ('[{ name = "default", members = ["a"] }]', "is the zone of every sensor no zone lists"),
        (
            '[{ name = "x", members = ["a/b"] }, { name = "y", members = ["a/b"] }]',
            "a/b is in both x and y",
        ),
    ],
)
def test_zones_that_would_be_ambiguous_are_refused_by_name(
    tmp_path: Path, zones: str, said: str
) -> None:
    bad = tmp_path / "alerts.toml"
    bad.write_text(f"[sites.s]\nzones = {zones}\n")
    with pytest.raises(ConfigError, match=said):
        load_toml_model(bad, AlertsConfig)


def test_a_pages_code_is_checked_on_its_own_thread_and_the_engine_gets_only_its_kind(
    store: AlertStore,
) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "budi", "cli", T0, zone="perimeter")
    op = Operation("disarm", SITE, "Budi (budi)", "budi", zone="perimeter", code=DURESS)
    judged = op.judge(CONFIG.people)
    assert (judged.code, judged.judged) == (None, CodeKind.DURESS)
    with pytest.raises(AlertError, match="wrong PIN"):
        replace(op, code="0000").judge(CONFIG.people)
    done = judged.apply(engine, T0 + S)
    assert zone_state(engine, "perimeter") is ArmingMode.DISARMED
    assert [n.key.split(":")[0] for n in done.notifications] == ["duress"]


def test_a_duress_pin_takes_as_many_pin_checks_as_the_disarm_pin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whoever watches the guard type must not tell the duress PIN by a quicker answer: each
    # argon2 check takes ~50 ms unloaded, over a second on a busy server.
    from broker.alerts import people as module
    from broker.alerts.config import PersonConfig

    checks: list[str] = []
    matches = module._matches
    monkeypatch.setattr(module, "_matches", lambda h, c: checks.append(h) or matches(h, c))
    person = PersonConfig(pin_hash=CHEAP.hash("4826"), duress_pin_hash=CHEAP.hash("7007"))
    assert module.judge({"budi": person}, "budi", "4826") is CodeKind.PIN
    pin_checks, checks[:] = len(checks), []
    assert module.judge({"budi": person}, "budi", "7007") is CodeKind.DURESS
    assert len(checks) == pin_checks


def test_a_refused_duress_disarm_still_tells_the_police_and_says_what_the_pin_would(
    store: AlertStore,
) -> None:
    # sari asked to disarm the ballot room; asking again is refused. Under duress it must be
    # refused the same way (the person watching sees nothing new), and the police told.
    engine = AlertEngine(CONFIG, store, T0)
    room = "ruang-surat-suara"
    engine.arm(SITE, "sari", "cli", T0)
    engine.disarm(SITE, "sari", "web", T0 + S, zone=room, code=PIN)
    with pytest.raises(AlertError) as normal:
        engine.disarm(SITE, "sari", "web", T0 + 2 * S, zone=room, code=PIN)
    assert normal.value.changes is not None and not normal.value.changes.notifications
    with pytest.raises(AlertError) as forced:
        engine.disarm(SITE, "sari", "web", T0 + 3 * S, zone=room, code=DURESS)
    assert str(forced.value) == str(normal.value)
    assert type(forced.value) is type(normal.value)
    said = forced.value.changes
    assert said is not None and said.alerts == [] and said.outbox_id is not None
    assert all("/alert/" not in m.topic for m in said.messages())
    (note,) = said.notifications
    assert note.key.startswith("duress:") and note.severity is Severity.CRITICAL
    (stored,) = [a for a in store.alerts() if a.rule == "duress"]
    assert stored.params["by"] == "sari" and stored.device == room
    assert zone_state(engine, room) is ArmingMode.ARMED  # the refusal itself stands


def test_a_refused_disarm_of_every_zone_leaves_every_zone_as_it_was(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    room = "ruang-surat-suara"
    engine.arm(SITE, "sari", "cli", T0)
    engine.disarm(SITE, "sari", "web", T0 + S, zone=room, code=PIN)
    with pytest.raises(AlertError, match="a second, different operator"):
        engine.disarm(SITE, "sari", "web", T0 + 2 * S, code=DURESS)  # every zone, room refused
    for zone in ("default", "perimeter", room):  # all or nothing, in memory as on disk
        assert zone_state(engine, zone) is ArmingMode.ARMED, zone
    assert [a.rule for a in store.alerts()] == ["duress"]
    with pytest.raises(AlertError, match="has no zone"):
        engine.disarm(SITE, "sari", "web", T0 + 3 * S, zone="gudang", code=DURESS)
    assert [a.count for a in store.alerts() if a.rule == "duress"] == [2]


def test_every_duress_disarm_is_sent_whatever_the_cooldown(store: AlertStore) -> None:
    slow = CONFIG.model_copy(
        update={"notify": CONFIG.notify.model_copy(update={"cooldown_s": 300})}
    )
    engine = AlertEngine(slow, store, T0)
    sent = []
    for i in range(3):
        engine.arm(SITE, "sari", "cli", T0 + 10 * i * S, zone="perimeter")
        forced = engine.disarm(
            SITE, "sari", "web", T0 + (10 * i + 1) * S, zone="perimeter", code=DURESS
        )
        sent += [n.id for n in forced.notifications]
    assert len(sent) == len(set(sent)) == 3


def test_a_person_with_only_a_duress_pin_must_type_a_code(store: AlertStore) -> None:
    engine = AlertEngine(CONFIG, store, T0)
    engine.arm(SITE, "budi", "cli", T0, zone="perimeter")
    with pytest.raises(AlertError, match="budi must give their PIN"):
        engine.disarm(SITE, "budi", "web", T0 + S, zone="perimeter")
    with pytest.raises(AlertError, match="wrong PIN"):
        engine.disarm(SITE, "budi", "web", T0 + S, zone="perimeter", code=PIN)
    assert zone_state(engine, "perimeter") is ArmingMode.ARMED
    engine.disarm(SITE, "dewi", "cli", T0 + 2 * S, zone="perimeter")  # no PIN at all: as before
    assert zone_state(engine, "perimeter") is ArmingMode.DISARMED


def test_the_collector_sends_a_refused_duress_disarms_alert_after_answering(
    store: AlertStore,
) -> None:
    import queue
    import threading
    import time
    from concurrent.futures import Future
    from types import SimpleNamespace
    from typing import Any, cast

    from broker.collector.alerting import AlertBridge
    from broker.collector.stats import CollectorStats

    now = time.time_ns()  # the collector's loop goes by the clock
    engine = AlertEngine(CONFIG, store, now)
    room = "ruang-surat-suara"
    engine.arm(SITE, "sari", "cli", now)
    engine.disarm(SITE, "sari", "web", now, zone=room, code=PIN)
    submitted: list[Any] = []
    session = SimpleNamespace(
        publish=lambda *a, **k: True,
        subscribed=threading.Event(),
        commands=queue.Queue(),
        stats=SimpleNamespace(connected=True),
    )
    fakes = {
        "notifier": SimpleNamespace(submit=submitted.extend),
        "session": session,
        "storage": SimpleNamespace(store=lambda points, stop: None),
        "live": SimpleNamespace(on_changes=lambda changes: None),
    }
    bridge = AlertBridge(engine, stats=CollectorStats(), **cast(Any, fakes))
    op = Operation("disarm", SITE, "Sari (sari)", "sari", zone=room, code=DURESS)
    asked: Future[Changes] = Future()
    bridge.operations.put((op.judge(CONFIG.people), asked))
    bridge.turn(threading.Event(), cast(Any, None), {})
    with pytest.raises(AlertError, match="a second, different operator"):
        asked.result(timeout=0)
    assert [n.key.split(":")[0] for n in submitted] == ["duress"]
