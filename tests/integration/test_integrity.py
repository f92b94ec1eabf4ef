"""Nothing forged or hidden: the collector and `audit verify` catch a changed byte, a unit
speaking for another, a replayed or forked event — against real Mosquitto and InfluxDB."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from devstack.stack import BIN, DATABASE, Stack
from protocol import topics
from protocol.models import DeadLetter, Event, EventBody, Kind
from protocol.signing import GENESIS, PrivateKey, event_hash, sign
from tests.integration.test_pipeline import _client
from tests.support import LiveAgent, eventually

pytestmark = pytest.mark.integration
SITE = "bangka-barat"


def unit_key(stack: Stack, device: str) -> PrivateKey:
    path = stack.registry / "devices" / SITE / device / "device.key"
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert not isinstance(key, bytes)
    return key  # type: ignore[return-value]


def signed(stack: Stack, device: str, seq: int, prev: str, state: str = "open") -> Event:
    body = EventBody(
        id=f"test-{device}-{seq}-{state}",
        site=SITE,
        device=device,
        sensor="pintu-utama",
        kind=Kind.DOOR,
        state=state,
        seq=seq,
        boot_id="testboot",
        ts=time.time_ns(),
        mono_ns=time.monotonic_ns(),
        clock_synced=True,
        prev=prev,
    )
    return sign(body, unit_key(stack, device))


def rows(stack: Stack, measurement: str, device: str) -> list[dict[str, Any]]:
    assert stack.influx is not None
    return stack.influx.query(
        f'SELECT * FROM "{measurement}" WHERE "device" = \'{device}\'', db=DATABASE
    )


@pytest.fixture
def running(stack: Stack) -> Stack:
    stack.start_servers()
    return stack


@pytest.fixture
def letters(running: Stack) -> list[DeadLetter]:
    got: list[DeadLetter] = []
    operator = _client(running, "operator-demo")
    operator.on_message = lambda _c, _u, m: got.append(DeadLetter.model_validate_json(m.payload))
    operator.subscribe(topics.DEADLETTER, qos=1)
    time.sleep(0.3)
    return got


def publish(stack: Stack, device: str, payload: bytes) -> None:
    client = _client(stack, device)
    topic = topics.DeviceTopics(SITE, device).event
    client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_one_changed_byte_is_an_integrity_violation_not_an_event(
    running: Stack, letters: list[DeadLetter]
) -> None:
    good = signed(running, "gudang-01", 1, GENESIS)
    payload = good.to_json()
    ts = str(good.ts).encode()
    tampered = payload.replace(ts, ts[:-1] + (b"1" if ts[-1:] != b"1" else b"2"))
    assert len(tampered) == len(payload) and tampered != payload
    publish(running, "gudang-01", tampered)
    eventually(lambda: rows(running, "integrity", "gudang-01"))
    [violation] = rows(running, "integrity", "gudang-01")
    assert violation["reason"] == "bad-signature" and violation["seq"] == 1
    eventually(lambda: letters)
    assert letters[0].reason.startswith("bad-signature")
    assert rows(running, "event", "gudang-01") == []
    publish(running, "gudang-01", payload)  # the untouched original is still welcome
    eventually(lambda: rows(running, "event", "gudang-01"))


def test_a_unit_cannot_speak_for_another_even_with_a_valid_signature_of_its_own(
    running: Stack, letters: list[DeadLetter]
) -> None:
    # gudang-01's certificate may publish only on gudang-01's topics (broker ACL); here it
    # publishes, on its own topic, an event that claims to come from gudang-02.
    body = signed(running, "gudang-01", 1, GENESIS).model_dump()
    body.update(device="gudang-02")
    forged = EventBody(**{k: v for k, v in body.items() if k != "sig"})
    publish(running, "gudang-01", sign(forged, unit_key(running, "gudang-01")).to_json())
    eventually(lambda: rows(running, "integrity", "gudang-01"))
    assert rows(running, "integrity", "gudang-01")[0]["reason"] == "identity-mismatch"
    assert rows(running, "event", "gudang-02") == []


def test_a_replay_is_stored_once_and_a_fork_of_a_seq_is_a_violation(
    running: Stack, letters: list[DeadLetter]
) -> None:
    first = signed(running, "gudang-02", 1, GENESIS)
    second = signed(running, "gudang-02", 2, event_hash(first), state="closed")
    for event in (first, second, first, second):  # at-least-once delivery, or a replay
        publish(running, "gudang-02", event.to_json())
    eventually(lambda: len(rows(running, "event", "gudang-02")) == 2)
    fork = signed(running, "gudang-02", 2, event_hash(first), state="open")
    publish(running, "gudang-02", fork.to_json())
    eventually(lambda: rows(running, "integrity", "gudang-02"))
    assert rows(running, "integrity", "gudang-02")[0]["reason"] == "replayed-or-forked"
    assert len(rows(running, "event", "gudang-02")) == 2


def audit(stack: Stack) -> subprocess.CompletedProcess[str]:
    config = stack.root / "collector" / "collector.toml"
    return subprocess.run(
        [str(BIN / "jaga-collector"), "audit", "verify", "--site", SITE, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_audit_verify_passes_real_traffic_and_catches_one_byte_changed_in_storage(
    running: Stack,
) -> None:
    with LiveAgent(running.unit_dir("gudang-01") / "agent.toml") as unit:
        for i in range(6):
            unit.set("pintu-utama", i % 2 == 0)
            time.sleep(0.12)
        eventually(lambda: unit.agent.outbox.depth() == 0)
        produced, _ = unit.agent.outbox.chain()
    eventually(lambda: len(rows(running, "event", "gudang-01")) == produced)
    clean = audit(running)
    assert clean.returncode == 0, clean.stderr
    assert (
        clean.stdout.strip().splitlines()[-1] == f"verified: {produced} events, 0 gaps, 0 failures"
    )

    # Someone with write access to InfluxDB turns a door "open" into "closed" after the fact.
    victim = next(r for r in rows(running, "event", "gudang-01") if r["state"] == "open")
    raw = victim["raw"].replace('"state":"open"', '"state":"closed"')
    line = (
        f"event,device=gudang-01,kind=door,sensor=pintu-utama,site={SITE} "
        f'raw="{raw.replace(chr(34), chr(92) + chr(34))}",state="closed" {victim["time"]}'
    )
    assert running.influx is not None
    running.influx.write_lines(line, db=DATABASE)
    caught = audit(running)
    assert caught.returncode == 1
    assert "signature does not verify" in caught.stdout
    # The forged event stands where the signed one was: one failure, and the signed event is
    # a hole in the chain that no resend can fill (the collector holds it as stored).
    assert ", 1 failures" in caught.stdout.strip().splitlines()[-1]


def test_a_missing_event_is_a_gap_for_the_auditor(running: Stack) -> None:
    e1 = signed(running, "gudang-01", 1, GENESIS)
    e2 = signed(running, "gudang-01", 2, event_hash(e1), state="closed")
    e3 = signed(running, "gudang-01", 3, event_hash(e2))
    for event in (e1, e3):  # e2 never arrives
        publish(running, "gudang-01", event.to_json())
    eventually(lambda: len(rows(running, "event", "gudang-01")) == 2)
    eventually(lambda: rows(running, "gap", "gudang-01"))
    gap = rows(running, "gap", "gudang-01")[0]
    assert (gap["first"], gap["last"], gap["change"]) == (2, 2, "opened")
    result = audit(running)
    assert result.stdout.strip().splitlines()[-1] == "verified: 2 events, 1 gaps, 0 failures"
    # Not received yet, and the collector asks for it: a resend can close it, so no failure.
    assert "keeps asking the unit for them" in result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    publish(running, "gudang-01", e2.to_json())  # the outbox delivers it late
    eventually(lambda: len(rows(running, "event", "gudang-01")) == 3)
    assert (
        audit(running).stdout.strip().splitlines()[-1] == "verified: 3 events, 0 gaps, 0 failures"
    )
    eventually(lambda: any(r["change"] == "closed" for r in rows(running, "gap", "gudang-01")))


def test_a_stored_event_gone_from_influxdb_is_a_gap_no_resend_can_close_and_fails_the_audit(
    running: Stack,
) -> None:
    e1 = signed(running, "gudang-01", 1, GENESIS)
    e2 = signed(running, "gudang-01", 2, event_hash(e1), state="closed")
    e3 = signed(running, "gudang-01", 3, event_hash(e2))
    for event in (e1, e2, e3):
        publish(running, "gudang-01", event.to_json())
    eventually(lambda: len(rows(running, "event", "gudang-01")) == 3)
    assert audit(running).returncode == 0
    # Someone with write access to InfluxDB removes the door closing (or a point at the same
    # time replaced it): the collector holds it as stored, so it will never ask for it again.
    assert running.influx is not None
    running.influx.query(
        f'DELETE FROM "event" WHERE "device" = \'gudang-01\' AND time >= {e2.ts} '
        f"AND time <= {e2.ts}",
        db=DATABASE,
    )
    assert len(rows(running, "event", "gudang-01")) == 2
    result = audit(running)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gudang-01: seq 2..2 missing, and no resend can close the gap" in result.stdout
    assert "the collector stored 1 of them" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        "verified: 2 events, 1 gaps, 0 failures, 1 gaps no resend can close"
    )


def test_selftest_passes_on_a_provisioned_unit_with_the_broker_up(running: Stack) -> None:
    config: Path = running.unit_dir("pos-jaga-01") / "agent.toml"
    done = subprocess.run(
        [str(BIN / "jaga-agent"), "selftest", "--config", str(config), "--timeout", "5"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = {
        line.split()[1]: line for line in done.stdout.splitlines() if line[:4] in ("PASS", "FAIL")
    }
    assert lines["broker"].startswith("PASS"), done.stdout
    assert lines["certificate"].startswith("PASS")
    assert "Traceback" not in done.stderr
    # The clock check reports what the kernel says; on a machine without NTP it fails, and
    # then (only then) the exit status is 1.
    failed = [line for line in lines.values() if line.startswith("FAIL")]
    assert done.returncode == (1 if failed else 0)
    assert all("clock" in line for line in failed), failed
