"""LiveState: what the collector tells it becomes tiles, alerts and pictures, pushed to pages."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from broker.alerts.lifecycle import Change, ChangeKind
from broker.web.state import LiveState
from broker.web.subscriptions import Signal, Update
from protocol.alerting import Alert, AlertState, ArmingHow, ArmingMode, ArmingState, Severity
from protocol.models import Checkpoint, Event, Heartbeat, Kind, Status

SITE = "bangka-barat"
NOW = 1_800_000_000 * 10**9
S = 10**9


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def event(
    seq: int,
    state: str,
    *,
    sensor: str = "pintu-utama",
    kind: Kind = Kind.DOOR,
    device: str = "gudang-01",
    ts: int = NOW,
    eid: str | None = None,
    shots: tuple[str, ...] | None = None,
) -> Event:
    return Event(
        id=eid or f"ev-{device}-{seq}",
        site=SITE,
        device=device,
        sensor=sensor,
        kind=kind,
        state=state,
        seq=seq,
        boot_id="boot-1",
        ts=ts,
        mono_ns=seq,
        clock_synced=True,
        snapshot_sha256=shots,
        prev="0" * 64,
        sig="s" * 40,
    )


def alert(state: AlertState = AlertState.RAISED, **kw: Any) -> Alert:
    fields: dict[str, Any] = {
        "id": "forced-door-0123456789",
        "site": SITE,
        "device": "gudang-01",
        "sensor": "pintu-utama",
        "rule": "forced-door",
        "severity": Severity.CRITICAL,
        "state": state,
        "latched": True,
        "title": "Forced door gudang-01/pintu-utama",
        "count": 1,
        "raised_at": NOW,
        "last_seen": NOW,
        "event_id": "ev-gudang-01-2",
    }
    return Alert(**(fields | kw))


def unit(state: LiveState, device: str = "gudang-01", site: str = SITE) -> dict[str, Any]:
    view = state.snapshot(lambda s: s == site)
    units: list[dict[str, Any]] = view["sites"][0]["units"]
    return next(u for u in units if u["device"] == device)


def sensor(state: LiveState, name: str, device: str = "gudang-01") -> dict[str, Any]:
    return next(s for s in unit(state, device)["sensors"] if s["name"] == name)


def test_registered_units_have_tiles_before_they_say_anything() -> None:
    state = LiveState(clock=Clock())
    state.add_site(SITE, "Gudang logistik pemilu")
    state.add_unit(SITE, "gudang-01", [("pintu-utama", "door"), ("lorong", "motion")])
    site = state.snapshot(lambda s: True)["sites"][0]
    assert site["name"] == "Gudang logistik pemilu"
    u = site["units"][0]
    assert u["online"] is None
    assert [(s["name"], s["kind"], s["state"]) for s in u["sensors"]] == [
        ("pintu-utama", "door", None),
        ("lorong", "motion", None),
    ]


def test_a_door_event_sets_its_sensor_and_a_late_older_one_does_not_undo_it() -> None:
    clock = Clock()
    state = LiveState(clock=clock)
    state.on_event(event(1, "closed", ts=NOW - 10 * S))
    state.on_event(event(3, "open", ts=NOW - 2 * S))
    state.on_event(event(2, "closed", ts=NOW - 5 * S))  # delivered late, after a reconnect
    door = sensor(state, "pintu-utama")
    assert (door["state"], door["since"], door["kind"]) == ("open", NOW - 2 * S, "door")
    clock.now += 120 * S
    state.on_event(event(4, "held-open", ts=clock.now))
    door = sensor(state, "pintu-utama")
    assert door["state"] == "held-open" and door["since"] == NOW - 2 * S  # open since then


def test_a_checkpoint_shows_the_unit_alive_but_no_tile_and_no_listed_event() -> None:
    clock = Clock()
    state = LiveState(clock=clock)
    state.on_event(event(1, "closed", ts=NOW - 10 * S))
    clock.now += 300 * S
    body = Checkpoint(interval_s=300, uptime_s=9, sensors={"pintu-utama": "closed"})
    checkpoint = event(2, "closed").model_copy(
        update={"kind": Kind.CHECKPOINT, "sensor": "unit", "state": "armed", "checkpoint": body}
    )
    state.on_event(checkpoint)
    u = unit(state)
    assert [s["name"] for s in u["sensors"]] == ["pintu-utama"]
    assert u["last_seen"] == clock.now
    assert state.event(checkpoint.id) is None
    assert state.event("ev-gudang-01-1") is not None


def test_motion_is_remembered_as_the_units_last_motion_even_when_it_arrives_late() -> None:
    state = LiveState(clock=Clock())
    state.on_event(event(5, "motion", sensor="lorong", kind=Kind.MOTION, ts=NOW - 3 * S))
    state.on_event(event(6, "still", sensor="lorong", kind=Kind.MOTION, ts=NOW - S))
    state.on_event(event(4, "motion", sensor="lorong", kind=Kind.MOTION, ts=NOW - 9 * S))
    u = unit(state)
    assert u["last_motion"] == {"sensor": "lorong", "at": NOW - 3 * S}
    assert sensor(state, "lorong")["state"] == "still"


def test_an_unsynchronised_unit_clock_is_shown_at_receipt_time() -> None:
    state = LiveState(clock=Clock())
    e = event(1, "open").model_copy(update={"ts": 5 * S, "clock_synced": False})
    state.on_event(e)
    assert sensor(state, "pintu-utama")["since"] == NOW


def test_status_and_heartbeat_say_whether_a_unit_is_there() -> None:
    clock = Clock()
    state = LiveState(clock=clock)
    state.on_status(Status(site=SITE, device="gudang-01", state="online", boot_id="b", version="1"))
    hb = Heartbeat(
        site=SITE,
        device="gudang-01",
        ts=NOW,
        boot_id="b",
        uptime_s=5,
        interval_s=10,
        outbox_depth=3,
        clock_synced=True,
        last_seq=9,
        chain_head="0" * 64,
        cpu_temp_c=51.0,
    )
    state.on_heartbeat(hb)
    u = unit(state)
    assert u["online"] is True and u["version"] == "1"
    assert u["heartbeat_interval_s"] == 10 and u["health"]["outbox_depth"] == 3
    clock.now += 30 * S
    state.on_status(Status(site=SITE, device="gudang-01", state="offline", boot_id="b"))
    u = unit(state)
    assert u["online"] is False and u["online_since"] == NOW + 30 * S


def test_pictures_become_the_units_latest_and_the_alerts_evidence_in_signed_order() -> None:
    state = LiveState(clock=Clock())
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    state.on_picture("ev-gudang-01-2", c, role="after")  # before its event: site unknown yet
    assert state.picture_sites(c) == set()
    state.on_event(event(2, "open", shots=(a, b, c)))
    state.on_picture("ev-gudang-01-2", a, SITE, "gudang-01", "before")
    state.on_picture("ev-gudang-01-2", b, SITE, "gudang-01", "still")
    state.on_picture("ev-gudang-01-2", b, SITE, "gudang-01", "still")  # delivered twice
    state.on_alert(alert())
    shown = state.snapshot(lambda s: True)["sites"][0]["alerts"][0]
    assert [p["sha256"] for p in shown["pictures"]] == [a, b, c]
    assert [p["role"] for p in shown["pictures"]] == ["before", "still", "after"]
    assert shown["event_url"] == "/events/ev-gudang-01-2"
    assert unit(state)["picture"]["sha256"] == b
    assert state.picture_sites(c) == {SITE}


def test_a_door_alert_shows_the_pictures_of_the_camera_event_it_caused() -> None:
    state = LiveState(clock=Clock())
    a, b = "a" * 64, "b" * 64
    state.on_event(event(2, "open"))
    state.on_alert(alert())  # raised on the door event, before any picture exists
    camera = event(3, "snapshot", sensor="camera", kind=Kind.CAMERA, eid="cam-3", shots=(a, b))
    state.on_event(camera.model_copy(update={"cause": "ev-gudang-01-2"}))
    state.on_picture("cam-3", b, SITE, "gudang-01", "still")
    state.on_picture("cam-3", a, SITE, "gudang-01", "before")
    shown = state.snapshot(lambda s: True)["sites"][0]["alerts"][0]
    assert [p["sha256"] for p in shown["pictures"]] == [a, b]
    assert [e.id for e in state.caused_by("ev-gudang-01-2")] == ["cam-3"]
    assert [x.id for x in state.alerts_of_event("cam-3")] == ["forced-door-0123456789"]


def test_an_alert_stays_while_open_and_leaves_when_closed_in_any_shape() -> None:
    state = LiveState(clock=Clock())
    state.on_alert(alert())
    acked = alert(AlertState.ACKNOWLEDGED, acked_by="Budi Santoso (budi)", acked_at=NOW + S)
    state.on_alert(Change(alert=acked, kind=ChangeKind.ACKNOWLEDGED))
    shown = state.alert("forced-door-0123456789")
    assert shown is not None and shown.state == "acknowledged"
    assert shown.acked_by == "Budi Santoso (budi)"
    state.on_alert(alert(AlertState.RESOLVED, closed_by="ops").model_dump(mode="json"))
    assert state.alert("forced-door-0123456789") is None
    state.on_alert(alert(id="tamper-1", rule="tamper"))
    state.on_alert_gone(SITE, "tamper-1")
    assert state.snapshot(lambda s: True)["sites"][0]["alerts"] == []


def test_an_alert_engine_decision_is_taken_whole() -> None:
    from broker.alerts.changes import Changes

    state = LiveState(clock=Clock())
    armed = ArmingState(
        site=SITE,
        state=ArmingMode.ARMED,
        since=NOW,
        by="schedule",
        how=ArmingHow.SCHEDULE,
        exit_delay_s=0,
        entry_delay_s=0,
    )
    state.on_changes(
        Changes(alerts=[Change(alert=alert(), kind=ChangeKind.RAISED)], arming=[armed])
    )
    site = state.snapshot(lambda s: True)["sites"][0]
    assert [a["id"] for a in site["alerts"]] == ["forced-door-0123456789"]
    assert site["arming"]["state"] == "armed" and site["arming"]["by"] == "schedule"


def test_arming_comes_as_a_mode_name_or_the_engines_retained_state() -> None:
    state = LiveState(clock=Clock())
    state.on_arming(SITE, "armed")
    assert state.snapshot(lambda s: True)["sites"][0]["arming"]["state"] == "armed"
    retained = ArmingState(
        site=SITE,
        state=ArmingMode.PENDING,
        since=NOW,
        by="gudang-01/pintu-utama",
        how=ArmingHow.SENSOR,
        exit_delay_s=30,
        entry_delay_s=30,
        until=NOW + 30 * S,
        entry_device="gudang-01",
        entry_sensor="pintu-utama",
    )
    state.on_arming(SITE, retained)
    arming = state.snapshot(lambda s: True)["sites"][0]["arming"]
    assert arming["state"] == "pending" and arming["until"] == NOW + 30 * S
    assert arming["entry"] == "gudang-01/pintu-utama"


def test_a_bad_call_is_logged_and_counted_never_raised_into_the_collector(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = LiveState(clock=Clock())
    state.on_alert({"id": "x"})  # missing nearly everything
    state.on_alert(object())
    state.on_arming(SITE, 42)
    assert state.faults == 3
    assert "the collector goes on" in caplog.text


def test_a_viewer_is_given_only_the_sites_it_may_see() -> None:
    state = LiveState(clock=Clock())
    state.on_event(event(1, "open"))
    state.add_unit("pangkal-pinang", "gudang-09", [("pintu", "door")])
    state.on_alert(alert())
    mine = state.snapshot(lambda s: s == "pangkal-pinang")
    assert [s["site"] for s in mine["sites"]] == ["pangkal-pinang"]
    assert mine["sites"][0]["alerts"] == []
    everything = state.snapshot(lambda s: True)
    assert [s["site"] for s in everything["sites"]] == [SITE, "pangkal-pinang"]


# pushing to pages -------------------------------------------------------------------------


def test_changes_made_on_collector_threads_reach_a_page_in_order() -> None:
    state = LiveState(clock=Clock())

    async def page() -> list[Update | Signal]:
        sub = state.subscribe(asyncio.get_running_loop())

        def collector() -> None:
            for seq in range(1, 6):
                state.on_event(event(seq, "open" if seq % 2 else "closed"))

        thread = threading.Thread(target=collector)
        thread.start()
        got = [await asyncio.wait_for(sub.queue.get(), 5) for _ in range(6)]
        thread.join()
        state.unsubscribe(sub)
        return got

    got = asyncio.run(page())
    assert isinstance(got[0], Update) and got[0].kind == "site"  # first sight of the site
    units = [g for g in got[1:] if isinstance(g, Update)]
    assert [u.kind for u in units] == ["unit"] * 5
    assert [u.data["sensors"][0]["state"] for u in units] == [
        "open",
        "closed",
        "open",
        "closed",
        "open",
    ]
    assert state.subscribers == 0


def test_a_page_that_falls_behind_gets_one_resync_instead_of_a_partial_story() -> None:
    state = LiveState(clock=Clock(), queue_size=4)

    async def page() -> tuple[list[Update | Signal], int]:
        sub = state.subscribe(asyncio.get_running_loop())
        for seq in range(1, 20):
            state.on_event(event(seq, "open" if seq % 2 else "closed"))
        await asyncio.sleep(0.05)  # let the loop run the deliveries
        got: list[Update | Signal] = []
        while not sub.queue.empty():
            got.append(sub.queue.get_nowait())
        return got, sub.resyncs

    got, resyncs = asyncio.run(page())
    assert resyncs >= 1
    assert Signal.RESYNC in got
    assert len(got) <= 4


def test_closing_ends_every_open_page() -> None:
    state = LiveState(clock=Clock())

    async def page() -> Update | Signal:
        sub = state.subscribe(asyncio.get_running_loop())
        state.on_event(event(1, "open"))
        state.close_all()
        await asyncio.sleep(0.01)
        items = []
        while not sub.queue.empty():
            items.append(sub.queue.get_nowait())
        return items[-1]

    assert asyncio.run(page()) is Signal.CLOSE
