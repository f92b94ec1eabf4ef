"""Evidence pictures lost after the unit had its PUBACKs come back: their chunks are no longer in
the unit's outbox, so only its evidence store still has them.

1. The broker dies with SIGKILL holding a camera event and its pictures (the collector was
   away): the collector's resend of the lost seqs makes the unit chunk the pictures again from
   its evidence store, and every picture the signed event vouched for is stored, hash intact.
2. Pictures missing from the collector's store (gone while it was stopped): on restart it finds
   the event unfinished, asks the unit with a one-seq resend, and gets them again; a picture the
   unit no longer has is logged once by the unit, and listed by `jaga-collector evidence missing`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest

from devstack.stack import Stack
from protocol import models
from protocol.models import Event
from tests.support import LiveAgent, eventually, no_autosave

pytestmark = [pytest.mark.integration, pytest.mark.faults]

UNIT = "gudang-01"


def camera_events(unit: LiveAgent) -> list[Event]:
    return [models.parse(Event, raw) for raw in unit.agent.outbox.picture_events(1, 10**9)]


def collector_has(evidence: Path, sha: str) -> bool:
    path = evidence / f"{sha}.jpg"
    return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha


def requeued(caplog: pytest.LogCaptureFixture) -> int:
    """Pictures the unit chunked again from its evidence store, from its log."""
    pattern = re.compile(r"(\d+) picture\(s\) queued again from the evidence store")
    return sum(
        int(m.group(1)) for r in caplog.records if (m := pattern.search(r.getMessage())) is not None
    )


def test_pictures_lost_in_a_broker_crash_come_back_from_the_units_evidence_store(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jaga.agent")
    stack.collector_settings = {"evidence_grace_s": 3}
    no_autosave(stack)
    stack.start_servers()
    assert stack.mosquitto is not None and stack.collector is not None
    evidence = stack.root / "collector" / "data" / "evidence"
    with LiveAgent(stack.unit_dir(UNIT) / "agent.toml") as unit:
        eventually(lambda: unit.agent.camera is not None and unit.agent.camera.frames_seen >= 4)
        eventually(lambda: unit.agent.outbox.depth() == 0)
        # The collector is away: the broker queues for its session and acknowledges the unit.
        stack.collector.stop()
        unit.set("pintu-utama", True)
        [event] = eventually(lambda: camera_events(unit), timeout=30)
        eventually(lambda: unit.agent.outbox.depth() == 0)
        hashes = event.snapshot_sha256 or ()
        assert len(hashes) >= 3, "frames before, the still, frames after"
        # Acknowledged by the broker: the chunks left the outbox; only the evidence store has them.
        assert unit.agent.outbox.attachment_rows(event.seq) == []
        assert unit.agent.evidence is not None and all(h in unit.agent.evidence for h in hashes)
        assert not any(collector_has(evidence, h) for h in hashes)
        # SIGKILL before any save: the event and every chunk were only in the broker's memory.
        stack.mosquitto.kill()
        stack.start_broker()
        stack.collector.start()
        eventually(lambda: all(collector_has(evidence, h) for h in hashes), timeout=60)
        log = stack.collector.log_tail(2000)
        assert "asking the unit to send them again" in log
    resent = requeued(caplog)
    stored = sum(collector_has(evidence, h) for h in hashes)
    print(f"broker crash: {len(hashes)} pictures vouched, {stored} stored, {resent} re-sent")
    assert resent >= len(hashes), "every picture came back from the unit's evidence store"
    audit = stack.collector_cli("audit", "verify", "--site", stack.site)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert f"evidence: {len(hashes)} pictures for 1 events, 0 hash mismatches\n" in audit.stdout


def test_pictures_missing_at_the_collector_are_asked_for_and_a_lost_one_is_reported(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jaga.agent")
    stack.collector_settings = {"evidence_grace_s": 2, "stats_interval_s": 1}
    stack.start_servers()
    assert stack.collector is not None
    evidence = stack.root / "collector" / "data" / "evidence"
    with LiveAgent(stack.unit_dir(UNIT) / "agent.toml") as unit:
        eventually(lambda: unit.agent.camera is not None and unit.agent.camera.frames_seen >= 4)
        unit.set("pintu-utama", True)
        [event] = eventually(lambda: camera_events(unit), timeout=30)
        hashes = event.snapshot_sha256 or ()
        eventually(lambda: all(collector_has(evidence, h) for h in hashes), timeout=30)
        assert requeued(caplog) == 0
        # While the collector is stopped, two of its pictures go; the unit lost one of them.
        stack.collector.stop()
        restored, lost = hashes[0], hashes[-1]
        (evidence / f"{restored}.jpg").unlink()
        (evidence / f"{lost}.jpg").unlink()
        assert unit.agent.evidence is not None
        unit.agent.evidence.path(lost).unlink()
        stack.collector.start()
        eventually(lambda: collector_has(evidence, restored), timeout=60)
        eventually(lambda: "(attempt 2)" in stack.collector.log_tail(2000), timeout=60)
        eventually(
            lambda: "evidence: 1 events missing 1 pictures" in stack.collector.log_tail(2000),
            timeout=30,
        )
    assert not collector_has(evidence, lost)
    gone = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "no longer in the evidence store" in r.getMessage()
    ]
    assert len(gone) == 1 and lost in gone[0].getMessage(), "logged once, though asked twice"
    print(
        f"collector lost 2 of {len(hashes)} pictures: {requeued(caplog)} re-sent by the unit "
        f"(asked at least twice), 1 gone from the unit too"
    )
    assert requeued(caplog) >= 1
    listing = stack.collector_cli("evidence", "missing")
    assert listing.returncode == 1, listing.stdout + listing.stderr
    assert f"{event.id}  {stack.site}/{UNIT} seq {event.seq}" in listing.stdout
    assert f"    {lost}\n" in listing.stdout and restored not in listing.stdout
    assert "evidence: 1 events missing 1 pictures" in listing.stdout
