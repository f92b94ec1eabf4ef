"""Two collectors on one broker, each taking its own sites (`mqtt.sites`): every event is
stored once, by the collector of its site, and no unit's chain is split between them (no
false gaps, unlike a shared subscription). A collector whose kept session subscribed to every
site drops those subscriptions when it comes back with a share of them."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from broker.collector.settle import stored_in
from devstack.stack import DATABASE, CollectorProcess, Stack, UnitSpec, jaga
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration

EAST = "bangka-barat"
WEST = "belitung"
WEST_UNIT = UnitSpec("gudang-b1", ("--door", "17:pintu-utama"))
STARTED: list[CollectorProcess] = []


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    """Site EAST (the demo units) and site WEST (one unit), one registry, one broker."""
    east = Stack(tmp_path / "east", heartbeat_s=2)
    east.provision_registry()
    reg = ("--dir", east.registry)
    jaga("jaga-provision", *reg, "site", "add", WEST, "--name", "Gudang Belitung",
         "--timezone", "Asia/Jakarta", "--broker-host", "127.0.0.1",
         "--broker-port", str(east.broker_port))  # fmt: skip
    jaga("jaga-provision", *reg, "device", "add", WEST, WEST_UNIT.device, *WEST_UNIT.wiring,
         "--pin-factory", "mock", "--generate-key")  # fmt: skip
    west = Stack(
        tmp_path / "west",
        units=(WEST_UNIT,),
        site=WEST,
        heartbeat_s=2,
        broker_port=east.broker_port,
        registry_dir=east.registry,
    )
    for name in ("east", "west"):  # one certificate per collector: one connection each
        east.collector_identity(name)
    east.configure_broker()  # the ACL from the registry: both sites
    west._unpack_unit(WEST_UNIT.device)
    east.start_broker()
    east.start_influx()
    try:
        yield east, west
    finally:
        for process in STARTED:
            process.stop()
        STARTED.clear()
        east.stop_all()


def collector(east: Stack, name: str, sites: list[str]) -> CollectorProcess:
    path = east.collector_config(client_id=f"jaga-collector-{name}", identity=name)
    config = tomllib.loads(path.read_text())
    config["data_dir"] = str(east.root / name / "data")
    config["mqtt"]["sites"] = sites
    own = east.root / name / "collector.toml"
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text(tomli_w.dumps(config))
    process = CollectorProcess(own, east.root / name / f"collector-{len(STARTED)}.log")
    STARTED.append(process)
    return process


def seqs(east: Stack, device: str) -> list[int]:
    assert east.influx is not None
    rows = east.influx.query(
        f'SELECT "seq" FROM "event" WHERE "device" = \'{device}\'', db=DATABASE
    )
    return sorted(int(r["seq"]) for r in rows)


def stored_by(log: str, site: str) -> int:
    """Events of the site the collector's `stored` lines name (a unit's batch shares one)."""
    return sum(1 for s, _, _ in stored_in(log) if s == site)


def play(unit: LiveAgent, sensor: str, times: int) -> int:
    """Toggle a door; once its events are all made and delivered, how many the unit made."""
    for i in range(times):
        unit.set(sensor, i % 2 == 0)
        time.sleep(0.05)
    time.sleep(0.5)  # past the debounce: the last change is an event by now
    eventually(lambda: unit.agent.outbox.depth() == 0)
    return unit.agent.outbox.chain()[0]


def test_each_collector_stores_its_own_sites_once_and_whole(sites: tuple[Stack, Stack]) -> None:
    east, west = sites
    c_east = collector(east, "east", [EAST]).start(timeout=30)
    c_west = collector(east, "west", [WEST]).start(timeout=30)
    with (
        LiveAgent(east.unit_dir("pos-jaga-01") / "agent.toml") as a,
        LiveAgent(west.unit_dir(WEST_UNIT.device) / "agent.toml") as b,
    ):
        made_a = play(a, "pintu-pos", 30)
        made_b = play(b, "pintu-utama", 30)
        eventually(lambda: seqs(east, "pos-jaga-01") == list(range(1, made_a + 1)))
        eventually(lambda: seqs(east, WEST_UNIT.device) == list(range(1, made_b + 1)))
    log_east, log_west = c_east.log_tail(5000), c_west.log_tail(5000)
    assert stored_by(log_east, EAST) == made_a and stored_by(log_east, WEST) == 0
    assert stored_by(log_west, WEST) == made_b and stored_by(log_west, EAST) == 0
    # No gap: each saw its units' whole chains (a shared subscription would split them).
    assert "asking the unit to send them again" not in log_east + log_west
    (subscribed,) = [line for line in log_east.splitlines() if "subscribed to" in line]
    assert f"jaga/v1/{EAST}/+/event" in subscribed and "jaga/v1/+/" not in subscribed
    for site, config in ((EAST, c_east.config), (WEST, c_west.config)):
        audit = jaga("jaga-collector", "audit", "verify", "--site", site, "--config", config)
        assert "0 gaps, 0 failures" in audit.stdout, audit.stdout


def test_a_kept_session_for_every_site_is_narrowed_to_the_sites_now_configured(
    sites: tuple[Stack, Stack],
) -> None:
    east, west = sites
    everything = collector(east, "east", []).start(timeout=30)  # the session takes every site
    everything.stop()
    narrowed = collector(east, "east", [EAST]).start(timeout=30)  # same client id: resumed
    assert "session resumed" in narrowed.log_tail(200)
    c_west = collector(east, "west", [WEST]).start(timeout=30)
    with LiveAgent(west.unit_dir(WEST_UNIT.device) / "agent.toml") as b:
        made = play(b, "pintu-utama", 10)
        eventually(lambda: seqs(east, WEST_UNIT.device) == list(range(1, made + 1)))
    time.sleep(1.0)  # anything still routed to the narrowed session would have come by now
    assert stored_by(narrowed.log_tail(5000), WEST) == 0
    assert stored_by(c_west.log_tail(5000), WEST) == made
