"""Plays a scripted scenario on MockFactory pins so the real agent runs without a Pi."""

from __future__ import annotations

import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.config import AgentConfig
from kernel.config import ConfigError, describe_errors

PULSES = {"motion": 2.0, "press": 0.3}
LEVELS = {"open": True, "close": False, "tamper": True, "restore": False}


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0, description="seconds from the start of the (looping) scenario")
    sensor: str
    action: Literal["open", "close", "motion", "press", "tamper", "restore"]
    once: bool = Field(default=False, description="only in the first pass of a looping scenario")


class Scenario(BaseModel):
    """A timeline of what happens at the unit's inputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loop_s: float = Field(default=0, ge=0, description="repeat every loop_s seconds; 0 = once")
    step: list[Step] = Field(default_factory=list)


def load_scenario(path: Path, config: AgentConfig) -> Scenario:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        scenario = Scenario.model_validate(raw)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(describe_errors(path, exc)) from None
    names = {s.name for s in config.sensors}
    unknown = sorted({s.sensor for s in scenario.step} - names)
    if unknown:
        raise ConfigError(
            f"{path}: steps name sensors this unit does not have: {', '.join(unknown)} "
            f"(it has {', '.join(sorted(names))})"
        )
    last = max((s.at + PULSES.get(s.action, 0) for s in scenario.step), default=0)
    if scenario.loop_s and last >= scenario.loop_s:
        raise ConfigError(f"{path}: loop_s = {scenario.loop_s} is shorter than the steps ({last}s)")
    return scenario


@dataclass
class PinDriver:
    """Drives MockPins the way the wired sensors would."""

    config: AgentConfig
    factory: Any

    def rest(self) -> None:
        """Every input at rest: doors shut, no motion, lid closed, button up."""
        for s in self.config.sensors:
            self.set_active(s.name, False)

    def set_active(self, sensor: str, active: bool) -> None:
        s = next(x for x in self.config.sensors if x.name == sensor)
        pin = self.factory.pin(s.pin)
        high = active == s.is_active_high
        if high:
            pin.drive_high()
        else:
            pin.drive_low()


def play(scenario: Scenario, driver: PinDriver, stop: threading.Event) -> int:
    """Run the timeline until it ends or stop is set; returns the number of actions played."""
    timeline: list[tuple[float, str, bool, bool]] = []
    for step in scenario.step:
        if step.action in PULSES:
            timeline.append((step.at, step.sensor, True, step.once))
            timeline.append((step.at + PULSES[step.action], step.sensor, False, step.once))
        else:
            timeline.append((step.at, step.sensor, LEVELS[step.action], step.once))
    timeline.sort(key=lambda t: t[0])
    played = 0
    start = time.monotonic()
    loop = 0
    while not stop.is_set():
        base = start + loop * scenario.loop_s
        for at, sensor, active, once in timeline:
            if once and loop > 0:
                continue
            if stop.wait(max(0.0, base + at - time.monotonic())):
                return played
            driver.set_active(sensor, active)
            played += 1
        if not scenario.loop_s:
            return played
        loop += 1
    return played
