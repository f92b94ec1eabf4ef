"""A resend that covers a camera event queues its pictures again from the evidence store, in
the very chunks and on the very topic of the first time, unless they are still queued; a
picture the store no longer has is logged once and reported in the command's answer."""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from agent import evidence_upload
from agent.app import Agent
from agent.camera.evidence import EvidenceFile, EvidenceSet, Role
from agent.config import AgentConfig
from agent.outbox import Pending
from agent.pins import make_pin_factory
from protocol import models
from protocol.models import Event

S = 1_000_000_000


def jpeg(size: tuple[int, int], seed: int) -> bytes:
    """Noise: a picture that needs several chunks."""
    noise = random.Random(seed).randbytes(size[0] * size[1] * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", size, noise).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    config = AgentConfig.model_validate(
        {
            "site": "bangka-barat",
            "device": "gudang-01",
            "broker": {"host": "127.0.0.1", "port": 1},
            "sensors": [{"name": "pintu-utama", "kind": "door", "pin": 17}],
            "data_dir": str(tmp_path),
            "pin_factory": "mock",
            # small packets: every picture needs several chunks
            "camera": {"kind": "simulated", "max_packet_size": 16_384},
        }
    )
    unit = Agent(config, make_pin_factory("mock"))
    yield unit
    unit.outbox.close()
    assert unit.evidence is not None
    unit.evidence.close()


def pictures(agent: Agent) -> evidence_upload.EvidenceUpload:
    assert agent.pictures is not None
    return agent.pictures


def chunks(pending: list[Pending]) -> list[tuple[str, bytes]]:
    return [(p.topic, p.payload) for p in pending if p.seq is None]


def camera_event(agent: Agent) -> Event:
    files = (
        EvidenceFile.of(Role.BEFORE, jpeg((320, 240), 10), 1 * S),
        EvidenceFile.of(Role.STILL, jpeg((960, 540), 20), 2 * S),
        EvidenceFile.of(Role.AFTER, jpeg((320, 240), 30), 3 * S),
    )
    pictures(agent).first(EvidenceSet("door-1", 2 * S, files, still_taken=True), agent.clock)
    [raw] = agent.outbox.picture_events(1, 10**9)
    return models.parse(Event, raw)


def test_pictures_still_queued_are_left_alone_and_delivered_ones_are_chunked_again_the_same(
    agent: Agent,
) -> None:
    event = camera_event(agent)
    first = chunks(agent.outbox.pending(limit=10_000))
    assert len(first) > 3 and all(t.endswith(f"/snapshot/{event.id}") for t, _ in first)

    again = pictures(agent).again(event.seq, event.seq)
    assert (again.events, again.queued, again.waiting, again.gone) == (1, 0, 3, ())
    assert chunks(agent.outbox.pending(limit=10_000)) == first  # nothing added

    agent.outbox.mark_delivered(p.id for p in agent.outbox.pending(limit=10_000))
    assert agent.outbox.depth() == 0  # acknowledged: the chunks left the outbox
    again = pictures(agent).again(1, event.seq)
    assert (again.events, again.queued, again.waiting, again.gone) == (1, 3, 0, ())
    assert chunks(agent.outbox.pending(limit=10_000)) == first  # the same bytes, same topic
    assert agent.evidence is not None
    assert all(agent.evidence.is_held(h) for h in event.snapshot_sha256 or ())

    assert pictures(agent).again(event.seq + 1, event.seq + 5).events == 0


def test_one_resend_rechunks_a_bounded_number_of_camera_events_and_says_how_many_are_left(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main loop (sensors) does this work: a wide range must not hold it for long."""
    monkeypatch.setattr(evidence_upload, "PICTURE_EVENTS_PER_RESEND", 2)
    files = (EvidenceFile.of(Role.STILL, jpeg((320, 240), 1), 1 * S),)
    for i in range(3):
        pictures(agent).first(EvidenceSet(f"door-{i}", 2 * S, files, still_taken=True), agent.clock)
    agent.outbox.mark_delivered(p.id for p in agent.outbox.pending(limit=10_000))
    again = pictures(agent).again(1, 10**6)
    assert (again.events, again.queued, again.deferred) == (2, 2, 1)
    assert "1 more camera event(s) left for later asks" in again.describe()


def test_a_picture_the_store_lost_is_logged_once_and_reported_in_the_answer(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    event = camera_event(agent)
    agent.outbox.mark_delivered(p.id for p in agent.outbox.pending(limit=10_000))
    lost = (event.snapshot_sha256 or ())[1]
    assert agent.evidence is not None
    agent.evidence.path(lost).unlink()
    with caplog.at_level(logging.WARNING, logger="jaga.agent"):
        one = pictures(agent).again(event.seq, event.seq)
        agent.outbox.mark_delivered(p.id for p in agent.outbox.pending(limit=10_000))
        two = pictures(agent).again(event.seq, event.seq)
    assert one.gone == two.gone == (f"{event.id}/{lost}",)
    assert one.queued == two.queued == 2
    warned = [r for r in caplog.records if "no longer in the evidence store" in r.getMessage()]
    assert len(warned) == 1 and lost in warned[0].getMessage()
    assert "2 queued again, 1 no longer kept on the unit" in two.describe()


def test_roles_recorded_before_this_version_are_guessed_so_the_still_stays_the_still(
    agent: Agent,
) -> None:
    event = camera_event(agent)
    agent.outbox.mark_delivered(p.id for p in agent.outbox.pending(limit=10_000))
    assert agent.evidence is not None
    agent.evidence._db.execute("UPDATE claim SET role=NULL")  # as an older unit stored them
    pictures(agent).again(event.seq, event.seq)
    from protocol.snapshot import unpack

    roles = {}
    for _, payload in chunks(agent.outbox.pending(limit=10_000)):
        header, _ = unpack(payload)
        roles[header.sha256] = header.role
    assert [roles[h] for h in event.snapshot_sha256 or ()] == ["before", "still", "after"]
