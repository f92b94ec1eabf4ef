"""The collector's evidence disk fills up (#14 finding 9): a refused picture is an alert, never
a crash of the loop, and the events go on being stored.

The collector's evidence folder is a 64 MB tmpfs of its own (mounted by the test, which needs
root) and `evidence_min_free_mb = 62`: after about 2 MB of pictures every further picture
is refused, as on a disk that is (nearly) full. gudang-01, a real agent process with a
simulated camera, opens its door five times a second.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import DATABASE, DEMO_UNITS, Stack
from tests.faults.fleet import AlertWatch, busy, small_disk, start_site
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

UNIT = DEMO_UNITS[0]
MB = 1024 * 1024


@pytest.fixture
def evidence_disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "collector" / "data" / "evidence", mb=64) as disk:
        yield disk


def test_a_full_evidence_disk_raises_an_alert_and_events_are_still_stored(
    tmp_path: Path, registry: Path, evidence_disk: Path
) -> None:
    stack = Stack(tmp_path, units=(UNIT,), registry_dir=registry, heartbeat_s=2)
    stack.configure_broker()
    watch: AlertWatch | None = None
    try:
        start_site(stack, {"evidence_min_free_mb": 62})
        assert stack.collector is not None and stack.influx is not None
        watch = AlertWatch(stack)
        stack.start_agent(busy(UNIT))
        alert = eventually(lambda: watch.raised("evidence-refused", UNIT.device), timeout=90)
        assert alert is not None and alert.severity == "critical"
        print("alert:", alert.title, "|", alert.detail)
        assert "free on the disk" in alert.detail

        def stored() -> int:
            rows = stack.influx.query(  # type: ignore[union-attr]
                f'SELECT count("seq") FROM "event" WHERE "device" = \'{UNIT.device}\'',
                db=DATABASE,
            )
            return int(rows[0]["count"]) if rows else 0

        before = stored()
        eventually(lambda: stored() > before + 20, timeout=30)  # events go on
        assert stack.collector.running, "the collector died of a full evidence disk"
        pictures = sum(p.stat().st_size for p in evidence_disk.glob("*.jpg"))
        free = shutil.disk_usage(evidence_disk).free
        print(f"evidence disk: {pictures} bytes of pictures, {free // MB} MB free")
        assert pictures <= 2 * MB  # pictures never took the room kept free (64 - 62 MB)
        log = stack.collector.log_tail(100_000)
        assert "Traceback" not in log
    finally:
        if watch is not None:
            watch.close()
        stack.stop_all()
