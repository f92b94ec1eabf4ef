"""Units' keys are read once and read again when the unit's certificates change (a renewal,
a newcomer), looked at no more often than the interval: never per event."""

from __future__ import annotations

from pathlib import Path

from kernel.unit_keys import UnitKeyCache


class Reads:
    """A loader reading every certificate file of the unit's folder, counting its reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def folder(self, site: str, device: str) -> Path:
        return self.root / site / device

    def load(self, site: str, device: str) -> list[str]:
        self.count += 1
        folder = self.folder(site, device)
        paths = [folder / "device.crt", *sorted((folder / "certs").glob("*.crt"))]
        return [p.read_text() for p in paths if p.exists()]


def test_a_renewed_certificate_is_seen_after_the_interval_and_not_read_per_event(
    tmp_path: Path,
) -> None:
    now = [0.0]
    reads = Reads(tmp_path)
    cache = UnitKeyCache(reads.load, reads.folder, every_s=30.0, clock=lambda: now[0])
    unit = tmp_path / "s" / "u"
    (unit / "certs").mkdir(parents=True)
    (unit / "device.crt").write_text("key-1")
    assert cache.keys("s", "u") == ["key-1"] and reads.count == 1
    for _ in range(1000):  # every event of the interval: no read
        assert cache.keys("s", "u") == ["key-1"]
    now[0] = 31.0
    assert cache.keys("s", "u") == ["key-1"] and reads.count == 1  # unchanged: not read again
    (unit / "certs" / "2.crt").write_text("key-2")  # renewed
    now[0] = 45.0
    assert cache.keys("s", "u") == ["key-1"]  # within the interval of the last look
    now[0] = 62.0
    assert cache.keys("s", "u") == ["key-1", "key-2"] and reads.count == 2


def test_a_unit_not_yet_in_the_registry_is_found_once_it_is(tmp_path: Path) -> None:
    now = [0.0]
    reads = Reads(tmp_path)
    cache = UnitKeyCache(reads.load, reads.folder, every_s=30.0, clock=lambda: now[0])
    assert cache.keys("s", "new") == []
    unit = tmp_path / "s" / "new"
    unit.mkdir(parents=True)
    (unit / "device.crt").write_text("key-1")
    now[0] = 10.0
    assert cache.keys("s", "new") == []  # not looked at again before the interval
    now[0] = 31.0
    assert cache.keys("s", "new") == ["key-1"]
