"""The soak's hostile unit sends what it says: first chunks of pictures it never finishes,
garbage, replays, a fork and an event at its last event's time — each of which the
collector's ingest (with the real registry's keys and a real chain book) stores once or
refuses for the right reason."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from broker.chain import ChainBook
from broker.ingest import Accepted, Duplicate, Ingest, Reason, Rejected
from broker.keys import KeyStore
from devstack.soak import HOSTILE, HostileUnit, enrol_hostile
from devstack.stack import Stack
from protocol import snapshot, topics


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    s = Stack(tmp_path_factory.mktemp("soak-hostile"))
    s.provision_registry()
    enrol_hostile(s)
    return s


def test_two_attacks_store_the_units_own_events_once_and_refuse_the_rest(
    stack: Stack, tmp_path: Path
) -> None:
    hostile = HostileUnit(stack, random.Random(1), chunks=50)
    book = ChainBook(tmp_path / "chain.sqlite3")
    ingest = Ingest(KeyStore(stack.registry), book)
    outcomes: Counter[tuple[str, str]] = Counter()
    pictures: set[str] = set()
    try:
        for _ in range(2):
            for kind, topic, payload in hostile.messages():
                where = topics.parse_device_topic(topic) if "/snapshot/.." not in topic else None
                if kind == "first-chunk":
                    assert where is not None and where.device == HOSTILE
                    header, data = snapshot.open_chunk(topic.rsplit("/", 1)[1], payload)
                    assert header.index == 0 and header.count > 1 and data
                    pictures.add(header.sha256)
                    continue
                outcome = ingest.handle(topic, payload)
                label = outcome.reason.value if isinstance(outcome, Rejected) else "stored"
                if isinstance(outcome, Duplicate):
                    label = "duplicate"
                outcomes[(kind, label)] += 1
                if isinstance(outcome, Accepted):
                    book.commit()
    finally:
        book.close()
    assert len(pictures) == 100  # 2 x 50 pictures, none ever finished
    assert outcomes[("own-event", "stored")] == 2
    assert outcomes[("replay", "duplicate")] == 1 + 2  # one own event, then two
    assert outcomes[("fork", "replayed-or-forked")] == 2
    assert outcomes[("same-time", Reason.TIME.value)] == 2
    assert {label for (kind, label) in outcomes if kind == "garbage"} <= {
        "bad-payload",
        "bad-topic",
        "unsupported-channel",
        "identity-mismatch",
    }
    assert sum(n for (kind, _), n in outcomes.items() if kind == "garbage") == 2 * 7
    assert [k for k in outcomes if k[0] == "passed-off"] == []  # no InfluxDB: none recorded
