"""Notification policy (cooldown, clears, routes) and the Notifier's queue, retries and restarts,
with an in-process sender (the real HTTP path is in tests/integration/test_alert_notify.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.alerts import lifecycle, notifications
from broker.alerts.config import NotifyConfig, Route
from broker.alerts.delivery import Notifier, target_id, urls_for
from broker.alerts.lifecycle import Change, ChangeKind
from broker.alerts.notifications import NoteWatch, Notification
from broker.alerts.rules import AlertKey, Clear, Raise, Rule
from protocol.alerting import Severity
from tests.unit.test_alerts_support import MON, SITE, WIB, S, jkt

T0 = jkt(MON, "22:00")
DOOR = AlertKey(Rule.FORCED_DOOR, SITE, "gudang-01", "pintu-belakang")
HELD = AlertKey(Rule.DOOR_HELD_OPEN, SITE, "gudang-01", "pintu-utama")
POLICY = NotifyConfig(cooldown_s=300)
URL_A = "json://127.0.0.1:9/a"
URL_B = "json://127.0.0.1:9/b"


def raised(key: AlertKey, at: int, current: Change | None = None) -> Change:
    signal = Raise(key, f"Title {key.rule}", "detail", at)
    return lifecycle.on_raise(current.alert if current else None, signal)


def decide(watch: NoteWatch, change: Change, now: int) -> tuple[NoteWatch, Notification | None]:
    return notifications.decide(watch, change, POLICY, WIB, change.alert.id, now)


# policy ---------------------------------------------------------------------------------------


def test_a_new_alert_notifies_and_repeats_within_the_cooldown_do_not() -> None:
    first = raised(DOOR, T0)
    watch, note = decide(NoteWatch(), first, T0)
    assert note is not None and note.id == f"{first.alert.id}.raised.1"
    repeat = raised(DOOR, T0 + 299 * S, first)
    watch, note = decide(watch, repeat, T0 + 299 * S)
    assert note is None
    repeat = raised(DOOR, T0 + 300 * S, repeat)
    _, note = decide(watch, repeat, T0 + 300 * S)
    assert note is not None and "(terulang, 3 kali)" in note.title


def test_a_clear_is_told_only_about_an_alert_people_were_told_about() -> None:
    first = raised(HELD, T0)
    watch, _ = decide(NoteWatch(), first, T0)
    cleared = lifecycle.on_clear(first.alert, Clear(HELD, "door closed", T0 + 10 * S))
    assert cleared is not None
    watch, note = decide(watch, cleared, T0 + 10 * S)
    assert note is not None and note.title.startswith("[PULIH]")
    flap = raised(HELD, T0 + 20 * S)  # a new alert, within the cooldown: not told
    watch, note = decide(watch, flap, T0 + 20 * S)
    assert note is None
    flap_cleared = lifecycle.on_clear(flap.alert, Clear(HELD, "door closed", T0 + 30 * S))
    assert flap_cleared is not None
    _, note = decide(watch, flap_cleared, T0 + 30 * S)
    assert note is None


def test_acknowledging_tells_nobody_and_clears_can_be_switched_off() -> None:
    first = raised(HELD, T0)
    watch, _ = decide(NoteWatch(), first, T0)
    acked = lifecycle.acknowledge(first.alert, "Budi", T0 + S)
    assert acked is not None
    assert decide(watch, acked, T0 + S)[1] is None
    cleared = lifecycle.on_clear(first.alert, Clear(HELD, "closed", T0 + 2 * S))
    assert cleared is not None
    quiet = NotifyConfig(notify_clears=False)
    assert notifications.decide(watch, cleared, quiet, WIB, "k", T0 + 2 * S)[1] is None


def test_routes_pick_urls_by_site_and_severity_each_once() -> None:
    config = NotifyConfig(
        routes=[
            Route(urls=[URL_A]),
            Route(sites=["other-site"], urls=[URL_B]),
            Route(severities=[Severity.CRITICAL], urls=[URL_A, URL_B]),
        ]
    )
    assert urls_for(config, SITE, Severity.WARNING) == [URL_A]
    assert urls_for(config, SITE, Severity.CRITICAL) == [URL_A, URL_B]
    assert urls_for(config, "other-site", Severity.WARNING) == [URL_A, URL_B]


# delivery -------------------------------------------------------------------------------------


class Sender:
    """Stands in for apprise: records calls, answers from a script, can hold until released."""

    def __init__(self, answers: list[bool | Exception] | None = None) -> None:
        self.answers = list(answers or [])
        self.calls: list[tuple[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, url: str, note: Notification) -> bool:
        self.gate.wait(10)
        self.calls.append((url, note.id))
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer


def note(n: int, severity: Severity = Severity.CRITICAL) -> Notification:
    return Notification(
        id=f"forced-door-{n:010x}.raised.1",
        key=f"k{n}",
        alert_id=f"forced-door-{n:010x}",
        site=SITE,
        severity=severity,
        kind=ChangeKind.RAISED,
        title=f"alert {n}",
        body="body",
        created=T0,
    )


def config(**kw: object) -> NotifyConfig:
    values: dict[str, object] = {
        "routes": [Route(severities=[Severity.CRITICAL], urls=[URL_A])],
        "backoff_initial_s": 0.001,
        "backoff_max_s": 0.002,
        "attempts": 3,
    }
    values.update(kw)
    return NotifyConfig.model_validate(values)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "notify.sqlite3"


@pytest.fixture
def started() -> Iterator[list[Notifier]]:
    notifiers: list[Notifier] = []
    yield notifiers
    for n in notifiers:
        n.stop(2)


def start(notifiers: list[Notifier], cfg: NotifyConfig, path: Path, sender: Sender) -> Notifier:
    n = Notifier(cfg, path, sender=sender)
    n.start()
    notifiers.append(n)
    return n


def test_a_full_queue_keeps_the_rest_on_disk_and_delivers_everything_in_order(
    started: list[Notifier], path: Path
) -> None:
    sender = Sender()
    sender.gate.clear()  # the endpoint hangs
    n = start(started, config(queue_max=2), path, sender)
    n.submit(note(i) for i in range(10))  # returns while the endpoint hangs
    assert n.pending() == 10
    sender.gate.set()
    assert n.wait_idle(10)
    assert [c[1] for c in sender.calls] == [note(i).id for i in range(10)]
    assert n.stats.delivered == 10


def test_a_failing_endpoint_is_retried_until_it_answers(
    started: list[Notifier], path: Path
) -> None:
    sender = Sender([False, RuntimeError("plugin bug"), True])
    n = start(started, config(), path, sender)
    n.submit([note(1)])
    assert n.wait_idle(10)
    assert len(sender.calls) == 3
    assert n.deliveries() == [(note(1).id, target_id(URL_A), "sent", 3)]
    assert n.stats.retries == 2


def test_after_the_last_attempt_a_delivery_is_failed_and_the_next_one_goes(
    started: list[Notifier], path: Path
) -> None:
    sender = Sender([False, False, False, True])
    n = start(started, config(), path, sender)
    n.submit([note(1), note(2)])
    assert n.wait_idle(10)
    assert [(d[0], d[2]) for d in n.deliveries()] == [(note(1).id, "failed"), (note(2).id, "sent")]
    assert n.stats.failed == 1


def test_the_same_notification_twice_is_delivered_once(started: list[Notifier], path: Path) -> None:
    sender = Sender()
    n = start(started, config(), path, sender)
    n.submit([note(1)])
    n.submit([note(1)])
    assert n.wait_idle(10)
    assert len(sender.calls) == 1


def test_notifications_no_route_takes_are_counted_not_stored(
    started: list[Notifier], path: Path
) -> None:
    n = start(started, config(), path, Sender())
    n.submit([note(1, Severity.WARNING)])
    assert n.stats.unrouted == 1 and n.deliveries() == []


def test_what_was_not_delivered_before_a_stop_is_delivered_after_the_next_start(
    started: list[Notifier], path: Path
) -> None:
    down = Sender([False] * 100)
    first = Notifier(
        config(attempts=100, backoff_initial_s=30, backoff_max_s=30), path, sender=down
    )
    first.start()
    first.submit([note(1)])
    while not down.calls:  # the first attempt failed; it now waits 30 s to retry
        threading.Event().wait(0.01)
    first.stop(5)
    up = Sender()
    second = start(started, config(), path, up)
    assert second.wait_idle(10)
    assert up.calls == [(URL_A, note(1).id)]
    assert second.deliveries() == [(note(1).id, target_id(URL_A), "sent", 2)]
