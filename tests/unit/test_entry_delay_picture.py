"""An entry door not disarmed in time is a forced door raised by the clock, not by an event; it
still names the door's opening as its trigger, so its notification gets that opening's still
(broker.alerts.picture_notes waits for the trigger's still), also across a collector restart
in the middle of the entry delay (#18: it was raised with no trigger, so no picture ever)."""

from __future__ import annotations

from broker.alerts import picture_notes
from broker.alerts.config import AlertsConfig
from tests.unit.test_alerts_engine import CONFIG, NIGHT, Engines, engines, raised
from tests.unit.test_alerts_support import SITE, S, door

__all__ = ["engines"]  # the fixture, used by name


def test_an_entry_door_forced_on_the_tick_names_its_opening(engines: Engines) -> None:
    engine = engines.open(NIGHT)
    opened = door("open", NIGHT + S)
    engine.on_event(opened, NIGHT + S)
    engine = engines.open(NIGHT + 10 * S)  # a collector restart inside the entry delay
    changes = engine.tick(NIGHT + 31 * S)
    (alert,) = raised(changes)
    assert (alert.rule, alert.event_id) == ("forced-door", opened.id)
    (note,) = changes.notifications
    assert picture_notes.wants_picture(note)  # its text goes, its picture follows


def test_an_entry_door_with_no_entry_delay_names_its_opening(engines: Engines) -> None:
    site = CONFIG.sites[SITE].model_copy(update={"entry_delay_s": 0})
    config = AlertsConfig.model_validate(CONFIG.model_dump() | {"sites": {SITE: site.model_dump()}})
    engine = engines.open(NIGHT, config)
    engine.tick(NIGHT)
    opened = door("open", NIGHT + S)
    changes = engine.on_event(opened, NIGHT + S)
    (alert,) = raised(changes)
    assert (alert.rule, alert.event_id) == ("forced-door", opened.id)
    (note,) = changes.notifications
    assert picture_notes.wants_picture(note)
