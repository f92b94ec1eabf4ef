"""CPU used by named processes and by the whole machine over a window, from /proc.

On a shared 2-core machine a throughput figure means little without knowing who else ran:
`rest` is what the machine did beyond the named processes (feeders and other sessions).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds of a process with all its children, live or reaped: a service's worker
    processes (the collector's signature pool) are part of what the service costs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime
    for child in _children(pid):
        total += tree_cpu_s(child) or 0.0
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / TICK, total / TICK


def rss_mb(pid: int) -> tuple[float, float] | None:
    """(current, peak) resident set size in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


@dataclass
class CpuUse:
    """Cores used over a window: per named process, the whole machine, and the rest."""

    window_s: float
    cores: dict[str, float]
    machine_busy_cores: float
    machine_cores: float | None
    rest_cores: float

    def of(self, prefix: str) -> float:
        """Cores used by the named processes whose name starts with prefix."""
        return round(sum(v for k, v in self.cores.items() if k.startswith(prefix)), 2)


class CpuMeter:
    """Cores used by each named process between start() and stop()."""

    def __init__(self, pids: dict[str, int], trees: frozenset[str] = frozenset()) -> None:
        """`trees`: the names measured with their child processes (`tree_cpu_s`)."""
        self.pids = pids
        self.trees = trees
        self._start: dict[str, float | None] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)
        self._t0 = 0.0

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._start = {name: self._cpu(name, pid) for name, pid in self.pids.items()}
        self._machine = machine_cpu_s()
        return self

    def _cpu(self, name: str, pid: int) -> float | None:
        return tree_cpu_s(pid) if name in self.trees else process_cpu_s(pid)

    def stop(self) -> CpuUse:
        wall = time.monotonic() - self._t0
        busy0, total0 = self._machine
        busy1, total1 = machine_cpu_s()
        cores = {}
        for name, pid in self.pids.items():
            before, after = self._start.get(name), self._cpu(name, pid)
            if before is not None and after is not None and wall > 0:
                cores[name] = round((after - before) / wall, 2)
        machine_busy = (busy1 - busy0) / wall if wall > 0 else 0.0
        return CpuUse(
            window_s=round(wall, 1),
            cores=cores,
            machine_busy_cores=round(machine_busy, 2),
            machine_cores=round((total1 - total0) / wall, 2) if wall > 0 else None,
            rest_cores=round(machine_busy - sum(cores.values()), 2),
        )
