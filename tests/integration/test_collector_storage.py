"""The collector's storage against a real InfluxDB: a batch it refuses because of one bad point
keeps every good point, and costs a few requests, not one per point (#14 finding 11: one
such point per batch capped the collector near 500 points/s)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from broker.collector.stats import CollectorStats
from broker.collector.storage import Storage
from broker.config import CollectorConfig, InfluxConfig
from broker.influx import InfluxWriter, Record
from devstack.forwarder import V2WriteForwarder
from devstack.influx import InfluxDB

pytestmark = pytest.mark.integration

NOW = 1_800_000_000_000_000_000


class CountingWriter(InfluxWriter):
    """The real writer, counting the requests it makes."""

    def __init__(self, config: InfluxConfig) -> None:
        super().__init__(config, attempts=1)
        self.requests = 0

    def write(self, points: Sequence[Record] | bytes, count: int | None = None) -> None:
        self.requests += 1
        super().write(points, count)


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxDB, str]]:
    db = InfluxDB(tmp_path_factory.mktemp("influx")).start()
    db.create_database("jaga")
    forwarder = V2WriteForwarder(db.url).start()
    try:
        yield db, forwarder.url
    finally:
        forwarder.stop()
        db.stop()


def storage(tmp_path: Path, url: str) -> tuple[Storage, CountingWriter]:
    config = CollectorConfig.model_validate(
        {"data_dir": str(tmp_path), "registry_dir": str(tmp_path), "influx": {"url": url}}
    )
    writer = CountingWriter(config.influx)
    return Storage(config, CollectorStats(), writer), writer


BAD = {
    "parse error": "probe,n=bad value= {t}",
    "int64 overflow": "probe,n=bad value=18446744073709551616i {t}",
    "field type conflict": 'probe,n=bad value="text" {t}',
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_one_bad_point_costs_a_few_requests_and_every_good_point_is_stored(
    tmp_path: Path, influx: tuple[InfluxDB, str], bad: str
) -> None:
    db, url = influx
    store, writer = storage(tmp_path, url)
    tag = f"b{abs(hash(bad)) % 10**6}"
    good = [f"probe,n={tag} value={i}i {NOW + i}" for i in range(117)]
    lines: list[Record] = [*good[:60], bad.format(t=NOW + 500), *good[60:]]
    assert store.store(lines, threading.Event())
    rows = db.query(f"SELECT count(\"value\") FROM probe WHERE n = '{tag}'", db="jaga")
    assert rows and int(rows[0]["count"]) == 117
    print(f"{bad[:40]!r}: {writer.requests} requests for 118 points")
    assert writer.requests <= 2 * 7 + 1  # bisection: about two per halving, never 118
    assert store.stats.refused_points >= 1
    store.close()


def test_a_batch_refused_whole_is_split_until_each_refused_point_is_found(
    tmp_path: Path, influx: tuple[InfluxDB, str]
) -> None:
    _, url = influx
    store, writer = storage(tmp_path, url)
    lines: list[Record] = [f"probe,n=all{i} value= {NOW + i}" for i in range(8)]
    assert store.store(lines, threading.Event())
    print(f"{writer.requests} requests, {store.stats.refused_points} refused")
    assert store.stats.refused_points >= 1 and writer.requests <= 2 * len(lines)
    store.close()
