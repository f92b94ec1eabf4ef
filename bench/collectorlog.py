"""When the collector stored each event, read from its own log.

The collector logs `stored <site>/<device> seq=<n> ...` for a unit's event once its InfluxDB
write has returned (HTTP 204 through the v2 write API), its chain book has committed and its
MQTT acknowledgement has been handed to paho; several events of one unit in one batch share a
line, `seq=<a>..<b>,<c> (<n> events)` (broker/collector/settle.stored_lines). That log line
is what the benchmarks call "stored".
Its timestamp is the log record's, printed to the millisecond (truncated): we add 0.5 ms so
the error is within ±0.5 ms and unbiased.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from broker.collector.settle import seqs_of

_STORED = re.compile(
    rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO jaga\.collector: stored "
    rb"([a-z0-9-]+)/([a-z0-9-]+) seq=([0-9.,]+)",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Stored:
    site: str
    device: str
    seq: int
    at_ns: int


class StoredLog:
    """Follows one collector log from where it is now (or from the start)."""

    def __init__(self, path: Path, *, from_start: bool = False, site: str | None = None) -> None:
        """site: count only that site's events (a collector taking a share of the sites)."""
        self.path = path
        self.site = site
        self._offset = 0 if from_start or not path.exists() else path.stat().st_size
        self._partial = b""
        self._seconds: dict[bytes, int] = {}
        self.count = 0

    def _read(self) -> bytes:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return b""
        self._offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return data[:cut]

    def poll_count(self) -> int:
        """Stored events so far."""
        self.poll()
        return self.count

    def poll(self) -> list[Stored]:
        """Stored events since the last poll, with their times."""
        out = []
        for m in _STORED.finditer(self._read()):
            site, device = m[3].decode(), m[4].decode()
            if self.site is not None and site != self.site:
                continue
            at = self._ns(m[1], int(m[2]))
            out.extend(Stored(site, device, seq, at) for seq in seqs_of(m[5].decode()))
        self.count += len(out)
        return out

    def _ns(self, second: bytes, ms: int) -> int:
        base = self._seconds.get(second)
        if base is None:
            local = dt.datetime.strptime(second.decode(), "%Y-%m-%d %H:%M:%S").astimezone()
            base = int(local.timestamp()) * 10**9
            self._seconds[second] = base
        return base + ms * 1_000_000 + 500_000
