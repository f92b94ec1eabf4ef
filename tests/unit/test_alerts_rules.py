"""Each rule on its own: the signals it gives for events, heartbeats and ticks at a given now."""

from __future__ import annotations

from dataclasses import dataclass

from broker.alerts import arming, sensor_rules, unit_rules
from broker.alerts.arming import Arm, SiteArming, Tick
from broker.alerts.config import DoorConfig, PostConfig, SiteAlerts, Thresholds, Window
from broker.alerts.rules import AlertKey, Clear, Raise, Rule, Signal
from broker.alerts.sensor_rules import CameraWatch, DoorWatch, PostWatch
from broker.alerts.unit_rules import GapChange, GapWatch, HealthWatch, UnitWatch
from broker.ingest import Reason, Rejected
from protocol.alerting import ArmingAudit, ArmingHow, ArmingMode, Severity
from protocol.models import Event, Heartbeat, Kind, Status
from tests.unit.test_alerts_support import (
    MON,
    SITE,
    TUE,
    WIB,
    S,
    door,
    event,
    heartbeat,
    jkt,
    status,
)

ENTRY = SiteAlerts(
    exit_delay_s=60,
    entry_delay_s=30,
    doors=[DoorConfig(device="gudang-01", sensor="pintu-utama", entry=True)],
)
LIMITS = Thresholds()
T0 = jkt(MON, "20:00")


@dataclass
class Panel:
    state: SiteArming
    history: list[ArmingAudit]


def panel(config: SiteAlerts, mode: ArmingMode, at: int = T0) -> Panel:
    """A site in `mode` since `at` (armed by Budi at `at` minus the exit delay)."""
    first = arming.initial(SITE, config, at - 3600 * S)
    history = list(first.audits)
    state = first.state
    if mode is not ArmingMode.DISARMED:
        start = at - config.exit_delay_s * S if mode is ArmingMode.ARMED else at
        armed = arming.step(state, config, Arm("Budi", ArmingHow.CLI), start)
        history.extend(armed.audits)
        state = armed.state
        if mode is ArmingMode.ARMED:
            done = arming.step(state, config, Tick(), at)
            history.extend(done.audits)
            state = done.state
    assert state.state is mode
    return Panel(state, history)


def only(signals: list[Signal]) -> Raise:
    assert len(signals) == 1, signals
    signal = signals[0]
    assert isinstance(signal, Raise)
    return signal


# forced door -----------------------------------------------------------------------------------


def test_a_door_opening_while_armed_is_a_critical_latched_forced_door() -> None:
    p = panel(SiteAlerts(), ArmingMode.ARMED)
    ev = door("open", T0 + 5 * S, sensor="pintu-belakang")
    _, signals = sensor_rules.forced_door(p.state, SiteAlerts(), p.history, ev, T0 + 6 * S)
    alert = only(signals)
    assert alert.key == AlertKey(Rule.FORCED_DOOR, SITE, "gudang-01", "pintu-belakang")
    assert alert.severity is Severity.CRITICAL
    assert alert.latched
    assert alert.event_id == ev.id
    assert "20:00 WIB" in alert.detail


def test_a_door_opening_while_disarmed_or_leaving_is_no_alarm() -> None:
    for mode in (ArmingMode.DISARMED, ArmingMode.ARMING):
        p = panel(SiteAlerts(), mode)
        _, signals = sensor_rules.forced_door(
            p.state, SiteAlerts(), p.history, door("open", T0 + S), T0 + S
        )
        assert signals == [], mode


def test_a_door_closing_while_armed_is_no_alarm() -> None:
    p = panel(SiteAlerts(), ArmingMode.ARMED)
    _, signals = sensor_rules.forced_door(
        p.state, SiteAlerts(), p.history, door("closed", T0 + S), T0 + S
    )
    assert signals == []


def test_an_entry_door_goes_pending_first_and_is_forced_when_the_delay_runs_out() -> None:
    p = panel(ENTRY, ArmingMode.ARMED)
    opened = T0 + 10 * S
    step, signals = sensor_rules.forced_door(
        p.state, ENTRY, p.history, door("open", opened), opened
    )
    assert signals == []
    assert step.state.state is ArmingMode.PENDING
    later = arming.step(step.state, ENTRY, Tick(), opened + 30 * S)
    assert later.expired is not None
    alert = sensor_rules.entry_expired(later.expired, WIB, opened + 30 * S)
    assert alert.key == AlertKey(Rule.FORCED_DOOR, SITE, "gudang-01", "pintu-utama")
    assert "not disarmed within 30 s" in alert.detail


def test_a_non_entry_door_during_the_entry_delay_alarms_at_once() -> None:
    p = panel(ENTRY, ArmingMode.ARMED)
    step, _ = sensor_rules.forced_door(p.state, ENTRY, p.history, door("open", T0 + S), T0 + S)
    back = door("open", T0 + 2 * S, sensor="pintu-belakang")
    _, signals = sensor_rules.forced_door(step.state, ENTRY, p.history, back, T0 + 2 * S)
    assert only(signals).key.sensor == "pintu-belakang"


TWO_ENTRIES = SiteAlerts(
    exit_delay_s=60,
    entry_delay_s=30,
    doors=[
        DoorConfig(device="gudang-01", sensor="pintu-utama", entry=True),
        DoorConfig(device="gudang-01", sensor="pintu-samping", entry=True),
    ],
)


def test_a_second_entry_door_in_the_same_batch_follows_the_first() -> None:
    p = panel(TWO_ENTRIES, ArmingMode.ARMED)
    arrival = T0 + 12 * S
    first = door("open", T0 + 10 * S)
    second = door("open", T0 + 9 * S, sensor="pintu-samping")  # happened earlier, same batch
    step, signals = sensor_rules.forced_door(p.state, TWO_ENTRIES, p.history, first, arrival)
    assert signals == [] and step.state.state is ArmingMode.PENDING
    history = p.history + list(step.audits)
    _, signals = sensor_rules.forced_door(step.state, TWO_ENTRIES, history, second, arrival)
    assert signals == []


def test_a_late_entry_door_whose_delay_is_still_running_starts_it() -> None:
    p = panel(ENTRY, ArmingMode.ARMED)
    opened = T0 + 10 * S  # armed then; the panel's current state began after it
    later = p.state.model_copy(update={"since": T0 + 20 * S})
    step, signals = sensor_rules.forced_door(
        later, ENTRY, p.history, door("open", opened), T0 + 25 * S
    )
    assert signals == []
    assert step.state.state is ArmingMode.PENDING
    assert step.state.until == opened + 30 * S
    _, signals = sensor_rules.forced_door(
        later, ENTRY, p.history, door("open", opened), T0 + 41 * S
    )
    assert "not disarmed within 30 s; reported 31 s late" in only(signals).detail


def test_a_door_that_opened_while_armed_but_arrives_after_the_disarm_is_still_forced() -> None:
    p = panel(SiteAlerts(), ArmingMode.ARMED)
    disarmed = arming.step(
        p.state, SiteAlerts(), arming.Disarm("Sari", ArmingHow.CLI), T0 + 3600 * S
    )
    history = p.history + list(disarmed.audits)
    ev = door("open", T0 + 600 * S, sensor="pintu-belakang")  # the unit was cut off
    _, signals = sensor_rules.forced_door(disarmed.state, SiteAlerts(), history, ev, T0 + 4000 * S)
    alert = only(signals)
    assert "while armed" in alert.detail
    assert "late" in alert.detail


def test_a_late_entry_door_whose_delay_saw_a_disarm_is_no_alarm() -> None:
    p = panel(ENTRY, ArmingMode.ARMED)
    opened = T0 + 600 * S
    disarmed = arming.step(p.state, ENTRY, arming.Disarm("Sari", ArmingHow.CLI), opened + 20 * S)
    history = p.history + list(disarmed.audits)
    _, signals = sensor_rules.forced_door(
        disarmed.state, ENTRY, history, door("open", opened), opened + 300 * S
    )
    assert signals == []


def test_an_event_from_an_unsynchronised_clock_is_judged_at_its_arrival() -> None:
    p = panel(SiteAlerts(), ArmingMode.ARMED)
    ev = door("open", 5 * S, synced=False)  # 1970: a Pi without RTC before NTP
    _, signals = sensor_rules.forced_door(p.state, SiteAlerts(), p.history, ev, T0 + S)
    assert only(signals).key.rule is Rule.FORCED_DOOR


# door held open ----------------------------------------------------------------------------------

HELD = AlertKey(Rule.DOOR_HELD_OPEN, SITE, "gudang-01", "pintu-utama")


def test_a_door_open_past_its_limit_warns_once_and_clears_when_closed() -> None:
    w, signals = sensor_rules.door_held_open(DoorWatch(), HELD, 120, door("open", T0), T0)
    assert signals == [] and w.open_since == T0
    w, signals = sensor_rules.door_held_open(w, HELD, 120, Tick(), T0 + 119 * S)
    assert signals == []
    w, signals = sensor_rules.door_held_open(w, HELD, 120, Tick(), T0 + 120 * S)
    alert = only(signals)
    assert alert.severity is Severity.WARNING and not alert.latched
    assert "open for 2 min 0 s" in alert.detail
    w, signals = sensor_rules.door_held_open(w, HELD, 120, Tick(), T0 + 500 * S)
    assert signals == []
    w, signals = sensor_rules.door_held_open(
        w, HELD, 120, door("closed", T0 + 600 * S), T0 + 600 * S
    )
    assert signals == [Clear(HELD, "door closed", T0 + 600 * S, msg="door closed")]
    assert w == DoorWatch()


def test_the_units_own_held_open_report_raises_and_the_tick_does_not_repeat_it() -> None:
    w, _ = sensor_rules.door_held_open(DoorWatch(), HELD, 120, door("open", T0), T0)
    w, signals = sensor_rules.door_held_open(
        w, HELD, 120, door("held-open", T0 + 90 * S), T0 + 90 * S
    )
    assert only(signals).key == HELD
    _, signals = sensor_rules.door_held_open(w, HELD, 120, Tick(), T0 + 130 * S)
    assert signals == []


def test_a_door_closed_in_time_never_warns() -> None:
    w, _ = sensor_rules.door_held_open(DoorWatch(), HELD, 120, door("open", T0), T0)
    w, signals = sensor_rules.door_held_open(w, HELD, 120, door("closed", T0 + 60 * S), T0 + 60 * S)
    assert signals == []
    _, signals = sensor_rules.door_held_open(w, HELD, 120, Tick(), T0 + 600 * S)
    assert signals == []


# intrusion ---------------------------------------------------------------------------------------


def test_motion_while_armed_is_a_critical_intrusion() -> None:
    p = panel(SiteAlerts(), ArmingMode.ARMED)
    ev = event(Kind.MOTION, "motion", T0 + S, sensor="lorong")
    alert = only(sensor_rules.intrusion(p.state, p.history, ev, WIB, T0 + S))
    assert alert.key == AlertKey(Rule.INTRUSION, SITE, "gudang-01", "lorong")
    assert alert.severity is Severity.CRITICAL and alert.latched


def test_motion_while_disarmed_leaving_or_in_the_entry_delay_is_no_intrusion() -> None:
    ev = event(Kind.MOTION, "motion", T0 + S, sensor="lorong")
    for mode in (ArmingMode.DISARMED, ArmingMode.ARMING):
        p = panel(SiteAlerts(), mode)
        assert sensor_rules.intrusion(p.state, p.history, ev, WIB, T0 + S) == [], mode
    p = panel(ENTRY, ArmingMode.ARMED)
    pending, _ = sensor_rules.forced_door(p.state, ENTRY, p.history, door("open", T0), T0)
    assert pending.state.state is ArmingMode.PENDING
    assert sensor_rules.intrusion(pending.state, p.history, ev, WIB, T0 + S) == []


def test_motion_is_judged_by_the_arming_state_at_the_moment_it_happened() -> None:
    p = panel(SiteAlerts(), ArmingMode.ARMED)
    disarmed = arming.step(p.state, SiteAlerts(), arming.Disarm("Sari", ArmingHow.CLI), T0 + 60 * S)
    history = p.history + list(disarmed.audits)
    while_armed = event(Kind.MOTION, "motion", T0 + 30 * S, sensor="lorong")
    assert (
        "late"
        in only(
            sensor_rules.intrusion(disarmed.state, history, while_armed, WIB, T0 + 90 * S)
        ).detail
    )
    before_arming = event(Kind.MOTION, "motion", T0 - 120 * S, sensor="lorong")
    assert sensor_rules.intrusion(p.state, p.history, before_arming, WIB, T0 + S) == []


def test_still_is_not_motion() -> None:
    p = panel(SiteAlerts(), ArmingMode.ARMED)
    ev = event(Kind.MOTION, "still", T0 + S, sensor="lorong")
    assert sensor_rules.intrusion(p.state, p.history, ev, WIB, T0 + S) == []


# tamper ------------------------------------------------------------------------------------------


def test_an_opened_enclosure_is_a_latched_critical_tamper() -> None:
    ev = event(Kind.TAMPER, "tampered", T0, sensor="tamper")
    alert = only(sensor_rules.tamper(ev, WIB, T0))
    assert alert.key == AlertKey(Rule.TAMPER, SITE, "gudang-01", "tamper")
    assert alert.latched and alert.severity is Severity.CRITICAL
    assert "enclosure opened" in alert.title


def test_a_covered_camera_is_a_tamper_of_the_camera() -> None:
    ev = event(Kind.CAMERA, "covered", T0, sensor="kamera")
    alert = only(sensor_rules.tamper(ev, WIB, T0))
    assert alert.key.sensor == "kamera" and "camera covered" in alert.title


def test_a_closed_enclosure_says_the_condition_is_gone() -> None:
    signals = sensor_rules.tamper(event(Kind.TAMPER, "normal", T0, sensor="tamper"), WIB, T0)
    assert [type(s) for s in signals] == [Clear]
    assert sensor_rules.tamper(event(Kind.CAMERA, "fault", T0, sensor="kamera"), WIB, T0) == []


# unit offline ------------------------------------------------------------------------------------

OFFLINE = AlertKey(Rule.UNIT_OFFLINE, SITE, "gudang-01")


def test_a_last_will_raises_nothing_at_once_and_after_its_grace_raises_once() -> None:
    w = UnitWatch(interval_s=10, last_beat=T0)
    w, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, status("offline"), T0 + S, 0)
    assert signals == [] and not w.offline and w.will_at == T0 + S
    w, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, status("offline"), T0 + 3 * S, 0)
    assert signals == [] and w.will_at == T0 + S  # the retained will again: the grace runs on
    w, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 4 * S - 1, 0)
    assert signals == []  # will_grace_s: 3 s
    w, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 4 * S, 0)
    alert = only(signals)
    assert alert.severity is Severity.CRITICAL and not alert.latched and alert.at == T0 + 4 * S
    assert "the broker lost the unit's connection (last will) 3 s ago" in alert.detail
    for item in (Tick(), status("offline"), Tick()):
        w, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, item, T0 + 40 * S, 0)
        assert signals == [] and w.offline
    w, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, heartbeat(T0), T0 + 41 * S, 0)
    assert [type(s) for s in signals] == [Clear]
    assert not w.offline and w.will_at is None


def never_raised(w: UnitWatch, items: list[tuple[Heartbeat | Status | Tick, int]]) -> UnitWatch:
    for item, now in items:
        w, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, item, now, 0)
        assert not any(isinstance(s, Raise) for s in signals), (item, now, signals)
    return w


def test_a_unit_back_within_the_grace_after_its_will_raises_nothing_ever() -> None:
    """A connection that breaks and is made again at once: its will, then its birth (or a
    heartbeat) a few seconds later."""
    for back in (status("online"), heartbeat(T0)):
        w = UnitWatch(interval_s=10, last_beat=T0)
        w = never_raised(w, [(status("offline"), T0 + S)])
        w = never_raised(w, [(Tick(), T0 + n * S) for n in range(2, 4)])
        assert w.will_at == T0 + S
        w = never_raised(w, [(back, T0 + 4 * S - 1)])
        assert w.will_at is None and not w.offline
        w = never_raised(w, [(Tick(), T0 + n * S) for n in range(4, 34)])
        # From then on it is watched as before: 3 silent intervals after it came back.
        _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 34 * S, 0)
        assert "no heartbeat for 30 s" in only(signals).detail


def test_the_grace_after_a_will_is_the_sites_will_grace_not_the_heartbeat_interval() -> None:
    w, _ = unit_rules.unit_offline(
        UnitWatch(interval_s=10), OFFLINE, LIMITS, heartbeat(T0, interval_s=60), T0, 0
    )
    w, _ = unit_rules.unit_offline(w, OFFLINE, LIMITS, status("offline"), T0 + S, 0)
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 4 * S, 0)
    assert "(last will) 3 s ago" in only(signals).detail
    patient = Thresholds(will_grace_s=30)
    _, signals = unit_rules.unit_offline(w, OFFLINE, patient, Tick(), T0 + 31 * S - 1, 0)
    assert signals == []
    _, signals = unit_rules.unit_offline(w, OFFLINE, patient, Tick(), T0 + 31 * S, 0)
    assert "(last will) 30 s ago" in only(signals).detail


def test_a_will_from_a_unit_never_heard_from_still_raises_after_the_grace() -> None:
    w, signals = unit_rules.unit_offline(
        UnitWatch(interval_s=10), OFFLINE, LIMITS, status("offline"), T0, 0
    )
    assert signals == [] and w.last_beat is None
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 3 * S - 1, 0)
    assert signals == []
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 3 * S, 0)
    assert "last will" in only(signals).detail


def test_after_a_collector_restart_the_grace_after_a_will_counts_from_the_restart() -> None:
    """The whole server restarted: the broker kept every unit's will, they reconnect."""
    restart = T0 + 3600 * S
    w = UnitWatch(interval_s=10, last_beat=T0)
    w, _ = unit_rules.unit_offline(w, OFFLINE, LIMITS, status("offline"), restart - 5 * S, restart)
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), restart + 3 * S - 1, restart)
    assert signals == []
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), restart + 3 * S, restart)
    assert "(last will) 8 s ago" in only(signals).detail


def test_a_late_will_does_not_delay_the_silence_past_three_intervals() -> None:
    """Silent loss: the broker sends the will only when the keepalive runs out."""
    w = UnitWatch(interval_s=10, last_beat=T0)
    w, _ = unit_rules.unit_offline(w, OFFLINE, LIMITS, status("offline"), T0 + 28 * S, 0)
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 30 * S - 1, 0)
    assert signals == []
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 30 * S, 0)
    detail = only(signals).detail
    assert "no heartbeat for 30 s (3 x 10 s)" in detail and "(last will) 2 s ago" in detail


def test_no_heartbeat_for_three_intervals_is_offline_and_not_a_moment_sooner() -> None:
    w, _ = unit_rules.unit_offline(UnitWatch(interval_s=10), OFFLINE, LIMITS, heartbeat(T0), T0, 0)
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 30 * S - 1, 0)
    assert signals == []
    w, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 30 * S, 0)
    assert "no heartbeat for 30 s (3 x 10 s)" in only(signals).detail
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 60 * S, 0)
    assert signals == []


def test_the_interval_comes_from_the_units_heartbeat() -> None:
    w, _ = unit_rules.unit_offline(
        UnitWatch(interval_s=10), OFFLINE, LIMITS, heartbeat(T0, interval_s=60), T0, 0
    )
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 179 * S, 0)
    assert signals == []
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 180 * S, 0)
    assert len(signals) == 1


def test_after_a_collector_restart_silence_counts_from_the_restart() -> None:
    w = UnitWatch(interval_s=10, last_beat=T0)  # persisted long ago
    restart = T0 + 3600 * S
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), restart + 29 * S, restart)
    assert signals == []
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), restart + 30 * S, restart)
    assert len(signals) == 1


def test_a_unit_never_heard_from_is_not_supervised_until_it_says_hello() -> None:
    w, signals = unit_rules.unit_offline(UnitWatch(interval_s=10), OFFLINE, LIMITS, Tick(), T0, 0)
    assert signals == []
    w, _ = unit_rules.unit_offline(w, OFFLINE, LIMITS, status("online"), T0, 0)
    _, signals = unit_rules.unit_offline(w, OFFLINE, LIMITS, Tick(), T0 + 30 * S, 0)
    assert len(signals) == 1


# integrity ---------------------------------------------------------------------------------------


def rejected(reason: Reason, site: str | None = SITE) -> Rejected:
    return Rejected(
        "jaga/v1/bangka-barat/gudang-01/event",
        reason,
        "signature does not verify",
        b"{}",
        site,
        "gudang-01" if site else None,
        42,
        "e42",
    )


def test_a_bad_signature_is_a_latched_integrity_alert_per_unit_and_reason() -> None:
    alert = only(unit_rules.integrity(rejected(Reason.SIGNATURE), T0))
    assert alert.key == AlertKey(Rule.INTEGRITY, SITE, "gudang-01", "bad-signature")
    assert alert.latched and alert.severity is Severity.CRITICAL
    assert "(seq 42)" in alert.title and alert.event_id == "e42"


def test_replays_broken_chains_and_times_out_of_order_are_integrity_alerts_of_their_own() -> None:
    reasons = (Reason.FORK, Reason.CHAIN, Reason.TIME)
    keys = {only(unit_rules.integrity(rejected(r), T0)).key.sensor for r in reasons}
    assert keys == {"replayed-or-forked", "broken-chain", "time-out-of-order"}


def test_a_malformed_payload_or_an_unknown_site_is_not_an_integrity_alert() -> None:
    assert unit_rules.integrity(rejected(Reason.PAYLOAD), T0) == []
    assert unit_rules.integrity(rejected(Reason.SIGNATURE, site=None), T0) == []


GAP = AlertKey(Rule.INTEGRITY, SITE, "gudang-01", "seq-gap")


def test_a_gap_not_closed_in_time_raises_and_clears_once_every_event_arrived() -> None:
    w, _ = unit_rules.seq_gap(GapWatch(), GAP, LIMITS, GapChange(5, 7, "opened"), T0)
    _, signals = unit_rules.seq_gap(w, GAP, LIMITS, Tick(), T0 + 600 * S - 1)
    assert signals == []
    w, signals = unit_rules.seq_gap(w, GAP, LIMITS, Tick(), T0 + 600 * S)
    alert = only(signals)
    assert "seq 5-7" in alert.detail and "3 event(s) missing" in alert.title
    assert not alert.latched
    w, signals = unit_rules.seq_gap(w, GAP, LIMITS, GapChange(6, 6, "closed"), T0 + 700 * S)
    assert signals == [] and w.missing == [(5, 5, T0), (7, 7, T0)]
    w, _ = unit_rules.seq_gap(w, GAP, LIMITS, GapChange(5, 5, "closed"), T0 + 701 * S)
    w, signals = unit_rules.seq_gap(w, GAP, LIMITS, GapChange(7, 7, "closed"), T0 + 702 * S)
    assert [type(s) for s in signals] == [Clear]
    assert w == GapWatch()


def test_a_gap_closed_before_the_timeout_never_alerts() -> None:
    w, _ = unit_rules.seq_gap(GapWatch(), GAP, LIMITS, GapChange(5, 5, "opened"), T0)
    w, _ = unit_rules.seq_gap(w, GAP, LIMITS, GapChange(5, 5, "closed"), T0 + 60 * S)
    _, signals = unit_rules.seq_gap(w, GAP, LIMITS, Tick(), T0 + 3600 * S)
    assert signals == []


# patrol missed -----------------------------------------------------------------------------------

POST = PostConfig(device="pos-jaga-01", sensor="patroli", every_min=60, grace_min=5)
PATROL = AlertKey(Rule.PATROL_MISSED, SITE, "pos-jaga-01", "patroli")
MIN = 60 * S


def checkin(ts: int) -> Event:
    return event(Kind.PATROL, "checkin", ts, device="pos-jaga-01", sensor="patroli")


def patrol(
    w: PostWatch, item: Event | Tick, now: int, since: int = 0
) -> tuple[PostWatch, list[Signal]]:
    return sensor_rules.patrol_missed(w, PATROL, POST, WIB, item, now, since)


def test_no_check_in_within_the_window_and_grace_is_a_missed_patrol() -> None:
    w, _ = patrol(PostWatch(), checkin(T0), T0)
    w, signals = patrol(w, Tick(), T0 + 65 * MIN - 1)
    assert signals == []
    w, signals = patrol(w, Tick(), T0 + 65 * MIN)
    alert = only(signals)
    assert alert.severity is Severity.WARNING
    assert "last check-in 20:00 WIB" in alert.detail
    w, signals = patrol(w, Tick(), T0 + 90 * MIN)
    assert signals == []  # still the same missed round
    w, signals = patrol(w, Tick(), T0 + 125 * MIN)
    assert "(2 missed)" in only(signals).detail


def test_a_check_in_clears_the_missed_patrol_and_restarts_the_window() -> None:
    w, _ = patrol(PostWatch(), checkin(T0), T0)
    w, _ = patrol(w, Tick(), T0 + 70 * MIN)
    w, signals = patrol(w, checkin(T0 + 71 * MIN), T0 + 71 * MIN)
    assert [type(s) for s in signals] == [Clear]
    assert w == PostWatch(last_checkin=T0 + 71 * MIN)
    _, signals = patrol(w, Tick(), T0 + 135 * MIN)
    assert signals == []


def test_a_post_never_checked_in_is_missed_one_window_after_the_collector_started() -> None:
    _, signals = patrol(PostWatch(), Tick(), T0 + 64 * MIN, since=T0)
    assert signals == []
    _, signals = patrol(PostWatch(), Tick(), T0 + 65 * MIN, since=T0)
    assert "no check-in seen" in only(signals).detail


def test_after_a_collector_restart_a_patrol_is_judged_from_the_restart() -> None:
    w = PostWatch(last_checkin=T0)
    restart = T0 + 120 * MIN  # check-ins made meanwhile are still queued in the broker
    _, signals = patrol(w, Tick(), restart + 64 * MIN, since=restart)
    assert signals == []
    _, signals = patrol(w, Tick(), restart + 65 * MIN, since=restart)
    assert len(signals) == 1


def test_patrols_are_only_required_within_their_hours() -> None:
    post = PostConfig(
        device="pos-jaga-01",
        sensor="patroli",
        every_min=60,
        grace_min=0,
        hours=[Window(days=["mon"], start="22:00", end="06:00")],
    )

    def run(w: PostWatch, now: int) -> tuple[PostWatch, list[Signal]]:
        return sensor_rules.patrol_missed(w, PATROL, post, WIB, Tick(), now, 0)

    w = PostWatch(last_checkin=jkt(MON, "12:00"))
    w, signals = run(w, jkt(MON, "21:59"))
    assert signals == []  # hours overdue, but no patrol is required yet
    w, signals = run(w, jkt(MON, "22:59"))
    assert signals == []
    w, signals = run(w, jkt(MON, "23:00"))  # one hour into the required period
    assert len(signals) == 1
    w, signals = run(w, jkt(TUE, "07:00"))
    assert signals == [] and w.missed == 0


# camera fault ------------------------------------------------------------------------------------

CAM = AlertKey(Rule.CAMERA_FAULT, SITE, "gudang-01", "kamera")


def cam(state: str, ts: int) -> Event:
    return event(Kind.CAMERA, state, ts, sensor="kamera")


def test_a_camera_fault_not_recovered_in_time_warns_and_recovery_clears() -> None:
    w, _ = sensor_rules.camera_fault(CameraWatch(), CAM, 60, cam("fault", T0), T0)
    _, signals = sensor_rules.camera_fault(w, CAM, 60, Tick(), T0 + 59 * S)
    assert signals == []
    w, signals = sensor_rules.camera_fault(w, CAM, 60, Tick(), T0 + 60 * S)
    assert only(signals).severity is Severity.WARNING
    w, signals = sensor_rules.camera_fault(w, CAM, 60, cam("recovered", T0 + 90 * S), T0 + 90 * S)
    assert [type(s) for s in signals] == [Clear]


def test_a_camera_that_recovers_in_time_never_warns() -> None:
    w, _ = sensor_rules.camera_fault(CameraWatch(), CAM, 60, cam("fault", T0), T0)
    w, signals = sensor_rules.camera_fault(w, CAM, 60, cam("recovered", T0 + 10 * S), T0 + 10 * S)
    assert signals == []
    _, signals = sensor_rules.camera_fault(w, CAM, 60, Tick(), T0 + 600 * S)
    assert signals == []


# unit health -------------------------------------------------------------------------------------


def health(w: HealthWatch, **fields: object) -> tuple[HealthWatch, list[Signal]]:
    return unit_rules.unit_health(w, SITE, "gudang-01", LIMITS, heartbeat(T0, **fields), T0)


def conditions(signals: list[Signal]) -> list[tuple[str, str | None]]:
    return [(type(s).__name__, s.key.sensor) for s in signals]


def test_each_health_condition_raises_its_own_warning() -> None:
    w, signals = health(
        HealthWatch(),
        disk_free_mb=100,
        cpu_temp_c=85.0,
        undervoltage=True,
        clock_synced=False,
        uptime_s=600,
        cert_days_left=30,
    )
    assert conditions(signals) == [
        ("Raise", "disk"),
        ("Raise", "cpu"),
        ("Raise", "power"),
        ("Raise", "clock"),
        ("Raise", "cert"),
    ]
    assert all(s.key.rule is Rule.UNIT_HEALTH for s in signals)
    assert {only([s]).severity for s in signals} == {Severity.WARNING}
    assert w.active == sorted(["disk", "cpu", "power", "clock", "cert"])


def test_healthy_figures_clear_and_missing_figures_keep_the_condition() -> None:
    w, _ = health(HealthWatch(), disk_free_mb=100, undervoltage=True, cert_days_left=10)
    w, signals = health(w)  # a heartbeat without disk, power or cert figures
    assert signals == []
    _, signals = health(w, disk_free_mb=900, undervoltage=False, cert_days_left=31)
    assert conditions(signals) == [("Clear", "disk"), ("Clear", "power"), ("Clear", "cert")]


def test_a_hot_cpu_clears_only_after_cooling_by_the_hysteresis() -> None:
    w, _ = health(HealthWatch(), cpu_temp_c=81.0)
    w, signals = health(w, cpu_temp_c=77.0)
    assert signals == [] and w.active == ["cpu"]
    _, signals = health(w, cpu_temp_c=74.9)
    assert conditions(signals) == [("Clear", "cpu")]


def test_an_unsynchronised_clock_is_allowed_while_the_unit_boots() -> None:
    _, signals = health(HealthWatch(), clock_synced=False, uptime_s=60)
    assert signals == []


def test_a_full_disk_flag_is_low_disk_even_without_a_figure() -> None:
    _, signals = health(HealthWatch(), disk_full=True)
    assert conditions(signals) == [("Raise", "disk")]
