"""A unit's certificate revoked, another's expired, while both are connected and producing.

One episode shared by the tests below, on a copy of the registry: gudang-01 is revoked with
`jaga-provision device revoke` (the broker reloads its CRL and ACL on SIGHUP; connected
clients stay connected), gudang-02 runs on a certificate that expires a few seconds into
the run, pos-jaga-01 is the control. The broker then restarts, so every unit must connect
again: the control gets back in; the other two are refused, must say why in their log,
keep storing events in their outbox (nothing lost: every seq is in InfluxDB or waiting), and
the collector raises the unit-offline health alert for them.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from devstack.soak import account, outbox_depth, outbox_path
from devstack.stack import DATABASE, DEMO_UNITS, Stack, jaga
from protocol.alerting import Alert
from provisioning.ca import CertificateAuthority
from provisioning.certs import Validity
from provisioning.registry import Registry
from tests.faults.fleet import AlertWatch, assert_exactly_once, busy, settle, start_site
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

REVOKED, EXPIRED, CONTROL = "gudang-01", "gudang-02", "pos-jaga-01"
EXPIRES_IN_S = 10


@dataclass
class Episode:
    stack: Stack
    logs: dict[str, str]
    depth_before: dict[str, int]
    depth_after: dict[str, int]
    unaccounted: dict[str, list[int]]
    """Seqs neither in InfluxDB nor waiting in the unit's outbox."""
    offline: dict[str, Alert | None]
    """The unit-offline alert the collector raised for each unit, if any."""
    offline_changes: dict[str, int]
    """unit-offline alert changes (raised, cleared) the collector wrote to InfluxDB per unit:
    these include an alert raised and cleared while the operator's client was reconnecting."""


def heartbeats(stack: Stack, device: str) -> int:
    assert stack.influx is not None
    rows = stack.influx.query(
        f'SELECT count("last_seq") FROM "heartbeat" WHERE "device" = \'{device}\'',
        db=DATABASE,
    )
    return int(rows[0]["count"]) if rows else 0


def offline_alert_changes(stack: Stack, device: str) -> int:
    assert stack.influx is not None
    rows = stack.influx.query(
        'SELECT count("id") FROM "alert" '
        f"WHERE \"rule\" = 'unit-offline' AND \"device\" = '{device}'",
        db=DATABASE,
    )
    return int(rows[0]["count"]) if rows else 0


def undelivered_seqs(stack: Stack, device: str) -> set[int]:
    db = sqlite3.connect(f"file:{outbox_path(stack, device)}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT seq FROM message WHERE delivered_ns IS NULL AND seq IS NOT NULL"
        ).fetchall()
    finally:
        db.close()
    return {int(r[0]) for r in rows}


def unaccounted(stack: Stack, device: str) -> list[int]:
    record = account(stack, [device])[device]
    waiting = undelivered_seqs(stack, device)
    return [s for s in record.missing() if s not in waiting]


def short_lived_certificate(registry: Path, device: str, seconds: int) -> None:
    """Re-issue the unit's certificate (same key) so that it expires `seconds` from now."""
    folder = registry / "devices" / "bangka-barat" / device
    key = serialization.load_pem_private_key((folder / "device.key").read_bytes(), None)
    now = datetime.now(UTC)
    validity = Validity(now - timedelta(hours=1), now + timedelta(seconds=seconds))
    CertificateAuthority(Registry(registry)).issue_device(
        "bangka-barat",
        device,
        key.public_key(),  # type: ignore[arg-type]
        validity=validity,
    )


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[Episode]:
    root = tmp_path_factory.mktemp("certificates")
    own = root / "registry"
    shutil.copytree(registry, own)  # revoking must not touch the other tests' registry
    stack = Stack(root, units=DEMO_UNITS, registry_dir=own, heartbeat_s=2)
    stack.configure_broker()
    try:
        yield run_episode(stack)
    finally:
        for device in (REVOKED, EXPIRED):  # they cannot drain: no point in a graceful stop
            if device in stack.agents:
                stack.agents[device].kill()
        stack.stop_all()


def run_episode(stack: Stack) -> Episode:
    # No grace after the collector's start: silence counts at once (default: 30 s).
    start_site(stack, collector={"alerts": {"resume_grace_s": 0}})
    # The short-lived certificate (the unit's agent.toml names the registry's file) is issued
    # once the site is up: the servers' start (long on a busy machine) is not part of its life.
    short_lived_certificate(stack.registry, EXPIRED, EXPIRES_IN_S)
    expires_at = time.monotonic() + EXPIRES_IN_S
    watch = AlertWatch(stack)
    try:
        return refuse(stack, expires_at, watch)
    finally:
        watch.close()


def refuse(stack: Stack, expires_at: float, watch: AlertWatch) -> Episode:
    for unit in sorted(stack.units, key=lambda u: u.device != EXPIRED):  # it first: it expires
        stack.start_agent(busy(unit))
    assert stack.mosquitto is not None
    eventually(lambda: all(r.tally().stored > 5 for r in account(stack).values()), timeout=30)
    # The collector has heard every unit's heartbeat: it knows how often to expect them.
    eventually(lambda: all(heartbeats(stack, u.device) for u in stack.units), timeout=30)
    jaga("jaga-provision", "--dir", stack.registry, "device", "revoke", stack.site, REVOKED)
    stack.configure_broker()  # the new CRL and an ACL without the revoked unit
    stack.mosquitto.reload()
    time.sleep(max(0.0, expires_at - time.monotonic()) + 1.0)
    # Every unit must connect again, to a broker that now checks the new CRL and the clock.
    stack.mosquitto.restart()
    control = stack.agents[CONTROL]
    eventually(lambda: control.log_tail(100_000).count("connected to ") >= 2, timeout=30)
    time.sleep(1.0)
    refused = (REVOKED, EXPIRED)
    before = {d: outbox_depth(stack, d) for d in refused}
    time.sleep(3.0)
    after = {d: outbox_depth(stack, d) for d in refused}
    # What the collector holds of each refused unit plus what waits in its outbox is all
    # it ever produced (give the collector a moment for what was on its way).
    deadline = time.monotonic() + 20
    while any(unaccounted(stack, d) for d in refused) and time.monotonic() < deadline:
        time.sleep(0.5)
    # The collector notices the silence (3 heartbeat intervals) and raises the health alert.
    with contextlib.suppress(AssertionError):
        eventually(lambda: all(watch.raised("unit-offline", d) for d in refused), timeout=30)
    offline = {d: watch.raised("unit-offline", d) for d in (*refused, CONTROL)}
    changes = {d: offline_alert_changes(stack, d) for d in (*refused, CONTROL)}
    logs = {d: stack.agents[d].log_tail(100_000) for d in refused}
    lost = {d: unaccounted(stack, d) for d in refused}
    return Episode(stack, logs, before, after, lost, offline, changes)


@pytest.mark.parametrize("device", [REVOKED, EXPIRED])
def test_a_refused_unit_keeps_queueing_and_loses_nothing(episode: Episode, device: str) -> None:
    assert episode.stack.agents[device].running
    assert episode.depth_after[device] > episode.depth_before[device] + 5
    assert episode.unaccounted[device] == []


@pytest.mark.parametrize("device", [REVOKED, EXPIRED])
def test_the_collector_raises_the_unit_offline_alert(episode: Episode, device: str) -> None:
    alert = episode.offline[device]
    assert alert is not None and alert.severity == "critical", episode.offline
    assert episode.offline_changes[device] >= 1, episode.offline_changes
    print(f"{device}: {alert.title}: {alert.detail}")


def test_the_other_units_are_not_affected(episode: Episode) -> None:
    stack = episode.stack
    stack.agents[CONTROL].stop()
    stack.units = tuple(u for u in stack.units if u.device == CONTROL)
    assert_exactly_once(settle(stack, timeout=60))


@pytest.mark.parametrize(
    ("device", "alert"),
    [(REVOKED, "alert certificate revoked"), (EXPIRED, "alert certificate expired")],
)
def test_a_refused_unit_logs_why(episode: Episode, device: str, alert: str) -> None:
    log = episode.logs[device]
    why = [line for line in log.splitlines() if alert in line]
    assert why, log[-1500:]
    said = [line for line in log.splitlines() if "revoked or expired" in line]
    assert said and " ERROR " in said[0], log[-1500:]
    print(f"{device}: {why[0]}")


def test_a_unit_the_acl_refuses_says_so_without_flooding_its_log(episode: Episode) -> None:
    """Revoked but still connected (Mosquitto keeps it after SIGHUP; only its ACL is gone):
    every publish is refused. Was a bug: one ERROR line per refused message."""
    refused = [line for line in episode.logs[REVOKED].splitlines() if "Not authorized" in line]
    print(f"{len(refused)} 'Not authorized' lines")
    assert 1 <= len(refused) <= 10


def test_a_broker_restart_raises_no_alert_for_units_that_come_straight_back(
    episode: Episode,
) -> None:
    """Mosquitto publishes every connected unit's last will when it shuts down. Was a bug:
    the will raised a critical unit-offline at once, for every unit of the province, cleared
    a second later; now the collector, which loses the broker too, judges no unit until it
    is back, and then from its reconnection plus resume_grace_s (#21)."""
    alert = episode.offline[CONTROL]
    assert alert is None, f"{alert.title}: {alert.detail} ({alert.state})" if alert else ""
    assert episode.offline_changes[CONTROL] == 0, episode.offline_changes
