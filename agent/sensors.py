"""gpiozero adapter: turns wired inputs into (sensor, active, monotonic ns) edges on a queue."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Any

from gpiozero import DigitalInputDevice

from agent.config import SensorConfig


@dataclass(frozen=True, slots=True)
class Edge:
    """A raw level change, timed when gpiozero reported it."""

    sensor: str
    active: bool
    at_ns: int


class SensorBank:
    """The unit's inputs; each edge lands on `edges`, the main loop does the rest."""

    def __init__(self, sensors: list[SensorConfig], pin_factory: Any) -> None:
        self.edges: queue.Queue[Edge | None] = queue.Queue()
        self._configs = {s.name: s for s in sensors}
        self._devices: dict[str, DigitalInputDevice] = {}
        try:
            for s in sensors:
                device = DigitalInputDevice(
                    s.pin, pull_up=s.uses_pull_up, bounce_time=None, pin_factory=pin_factory
                )
                device.when_activated = self._callback(s.name, True)
                device.when_deactivated = self._callback(s.name, False)
                self._devices[s.name] = device
        except Exception:
            self.close()
            raise

    def _callback(self, name: str, device_active: bool) -> Any:
        def fire() -> None:
            self.edges.put(Edge(name, self._is_active(name, device_active), time.monotonic_ns()))

        return fire

    def _is_active(self, name: str, device_active: bool) -> bool:
        # gpiozero calls a pulled-up input active when low; we want "open/motion/pressed".
        config = self._configs[name]
        level_high = (not device_active) if config.uses_pull_up else device_active
        return level_high == config.is_active_high

    def read(self, name: str) -> bool:
        """Current level of a sensor, as active (True) or not."""
        return self._is_active(name, bool(self._devices[name].is_active))

    def pin_levels(self) -> dict[str, tuple[int, bool]]:
        """For the self-test: (pin, active) per sensor."""
        return {n: (self._configs[n].pin, self.read(n)) for n in self._devices}

    def close(self) -> None:
        for device in self._devices.values():
            device.close()
        self._devices.clear()
