"""Each line of the enrolment log is its own `lifecycle` point in a real InfluxDB: the log keeps
whole seconds, so two records of one unit and event in one second (a token tried twice) must
not land on one point (InfluxDB keeps one per measurement, tags and time)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.collector.lifecycle import LifecycleFeed
from broker.config import InfluxConfig
from broker.influx import InfluxWriter
from devstack.forwarder import V2WriteForwarder
from devstack.influx import InfluxDB

pytestmark = pytest.mark.integration
DATABASE = "jaga"


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[tuple[InfluxDB, InfluxWriter]]:
    db = InfluxDB(tmp_path / "influx").start()
    forwarder = V2WriteForwarder(db.url).start()
    writer = InfluxWriter(InfluxConfig(url=forwarder.url, bucket=f"{DATABASE}/autogen"))
    try:
        db.create_database(DATABASE)
        yield db, writer
    finally:
        writer.close()
        forwarder.stop()
        db.stop()


def test_two_records_of_one_unit_and_event_in_one_second_are_two_points(
    tmp_path: Path, influx: tuple[InfluxDB, InfluxWriter]
) -> None:
    db, writer = influx
    log = tmp_path / "log.jsonl"
    refused = {"event": "enrol-refused", "site": "bangka-barat", "device": "gudang-01"}
    lines = [
        {"at": "2026-12-07T01:02:03+00:00", **refused, "reason": "already used", "by": "token"},
        {"at": "2026-12-07T01:02:03+00:00", **refused, "reason": "expired", "by": "token"},
        {"at": "2026-12-07T01:02:04.250000+00:00", "event": "revoked", "site": "bangka-barat",
         "device": "gudang-01", "by": "dewi"},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    feed = LifecycleFeed(log, tmp_path / "lifecycle.offset")
    writer.write(feed.read().points)
    rows = db.query('SELECT * FROM "lifecycle" ORDER BY time', db=DATABASE)
    assert [r["reason"] for r in rows[:2]] == ["already used", "expired"]  # both kept, in order
    second = 1_796_605_323 * 10**9  # 2026-12-07T01:02:03Z
    assert all(second <= r["time"] < second + 10**6 for r in rows[:2])  # in their second
    assert rows[2]["event"] == "revoked"
    assert 250_000_000 <= rows[2]["time"] - (second + 10**9) < 251_000_000  # its own fraction
    # Read again (a crash before the offset was kept): the same points, not new ones.
    writer.write(LifecycleFeed(log, tmp_path / "other.offset").read().points)
    assert len(db.query('SELECT * FROM "lifecycle"', db=DATABASE)) == 3
