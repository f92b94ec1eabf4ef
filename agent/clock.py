"""Both clocks of the unit, passed in so tests and the simulator can own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent import host


@dataclass(frozen=True, slots=True)
class Clock:
    """Monotonic time for order and deadlines, wall time for timestamps, and whether it is true."""

    mono_ns: Callable[[], int] = time.monotonic_ns
    wall_ns: Callable[[], int] = time.time_ns
    synced: Callable[[], bool] = host.clock_synced
