"""gpiozero adapter for the unit's one wired output, the siren relay: switched only on a change,
and every change logged, so the journal shows when the siren sounded."""

from __future__ import annotations

import logging
from typing import Any

from gpiozero import DigitalOutputDevice

from agent.config import SirenConfig

log = logging.getLogger("jaga.agent")


class SirenOutput:
    """The siren's relay (or transistor), off until the guard says it sounds."""

    def __init__(self, config: SirenConfig, pin_factory: Any) -> None:
        self._out = DigitalOutputDevice(
            config.pin,
            active_high=config.active_high,
            initial_value=False,
            pin_factory=pin_factory,
        )

    @property
    def on(self) -> bool:
        """The siren is sounding (its output is switched on)."""
        return bool(self._out.value)

    def drive(self, on: bool) -> None:
        """Switch the siren to on (a no-op when it already is)."""
        if self.on != on:
            log.warning("siren %s", "ON" if on else "off")
            self._out.value = on

    def close(self) -> None:
        self._out.close()
