"""Which notification owes which picture (broker.alerts.picture_notes through the Notifier):
only alarms raised by an event wait; a still reaches exactly the notifications of its trigger;
a wait expires; a camera event of no alarm sends nothing."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from broker.alerts import lifecycle, notifications, picture_notes
from broker.alerts.delivery import Notifier
from broker.alerts.notifications import NoteWatch, Notification
from protocol.models import Event, Kind
from tests.unit.test_alerts_notify import Sender, config
from tests.unit.test_alerts_support import S, door, event
from tests.unit.test_i18n import stored_forced_door

T0 = 1_800_000_000 * S
WIB = ZoneInfo("Asia/Jakarta")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def alarm_note(
    trigger: str, kind: lifecycle.ChangeKind = lifecycle.ChangeKind.RAISED
) -> Notification:
    alert = stored_forced_door().model_copy(update={"event_id": trigger})
    change = lifecycle.Change(alert=alert, kind=kind)
    _, note = notifications.decide(NoteWatch(), change, config(), WIB, "k", alert.raised_at)
    assert note is not None
    return note


def camera(cause: str | None, sha: str) -> Event:
    shot = event(Kind.CAMERA, "snapshot", T0, sensor="camera")
    return shot.model_copy(update={"cause": cause, "snapshot_sha256": (sha,)})


def notifier(tmp: Path, sender: Sender, clock: Clock) -> Notifier:
    n = Notifier(config(), tmp / "n.sqlite3", sender=sender, clock=clock, pictures=tmp.joinpath)
    n.start()
    return n


def test_a_still_goes_only_to_the_notifications_of_its_trigger(tmp_path: Path) -> None:
    sender, clock = Sender(), Clock()
    n = notifier(tmp_path, sender, clock)
    try:
        n.submit([alarm_note("door-1")])
        other = alarm_note("door-2").model_copy(update={"id": "other.raised.1"})
        n.submit([other])
        shot = camera("door-1", "a" * 64)
        n.camera_events([shot, door("open", T0)])
        n.pictures_stored([(shot.id, "b" * 64, "before"), (shot.id, "a" * 64, "still")])
        assert n.wait_idle(5)
        follow = [i for _, i in sender.calls if i.endswith(".picture")]
        assert follow == [f"{alarm_note('door-1').id}.picture"]
    finally:
        n.stop()


def test_closing_notes_and_camera_events_of_no_alarm_send_no_picture(tmp_path: Path) -> None:
    sender, clock = Sender(), Clock()
    n = notifier(tmp_path, sender, clock)
    try:
        raised = alarm_note("door-1")
        cleared = raised.model_copy(update={"kind": lifecycle.ChangeKind.CLEARED, "id": "c"})
        assert picture_notes.wants_picture(raised)
        assert not picture_notes.wants_picture(cleared)
        n.submit([cleared])
        shot = camera("door-1", "a" * 64)
        saved = camera("guard:budi", "c" * 64)  # the wall's save button: no alarm behind it
        n.camera_events([shot, saved, camera(None, "d" * 64)])
        n.pictures_stored([(shot.id, "a" * 64, "still"), (saved.id, "c" * 64, "still")])
        assert n.wait_idle(5)
        assert [i for _, i in sender.calls] == ["c"]
    finally:
        n.stop()


def test_a_picture_that_never_comes_is_forgotten_after_the_wait(tmp_path: Path) -> None:
    sender, clock = Sender(), Clock()
    n = notifier(tmp_path, sender, clock)
    try:
        n.submit([alarm_note("door-1")])
        clock.now += picture_notes.WAIT_NS + S
        n.submit([alarm_note("door-9").model_copy(update={"id": "later.raised.1"})])
        shot = camera("door-1", "a" * 64)
        n.camera_events([shot])
        n.pictures_stored([(shot.id, "a" * 64, "still")])  # too late: its wait expired
        assert n.wait_idle(5)
        assert not [i for _, i in sender.calls if i.endswith(".picture")]
    finally:
        n.stop()
