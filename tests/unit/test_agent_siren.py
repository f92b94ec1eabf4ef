"""The unit's own siren, driven by time passed in."""

from agent.domain.siren import Siren, SirenState

S = 1_000_000_000
SIREN = Siren(duration_ns=180 * S)


def test_a_forced_door_sounds_at_once_for_the_configured_time() -> None:
    state = SIREN.intrusion(SirenState(), 10 * S)
    assert SIREN.sounding(state) and SIREN.deadline(state) == 190 * S
    assert SIREN.sounding(SIREN.tick(state, 189 * S))
    assert not SIREN.sounding(SIREN.tick(state, 190 * S))


def test_an_entry_door_waits_for_the_delay_and_a_disarm_in_time_keeps_it_silent() -> None:
    state = SIREN.intrusion(SirenState(), 10 * S, delay_ns=30 * S)
    assert not SIREN.sounding(SIREN.tick(state, 39 * S))
    assert SIREN.sounding(SIREN.tick(state, 40 * S))
    quiet = SIREN.disarm(SIREN.tick(state, 20 * S))
    assert not SIREN.sounding(SIREN.tick(quiet, 100 * S)) and SIREN.deadline(quiet) is None


def test_disarm_stops_a_sounding_siren() -> None:
    state = SIREN.intrusion(SirenState(), 0)
    assert not SIREN.sounding(SIREN.disarm(state))
