"""Turn the technician's `--door 17:pintu-utama` options into validated sensor entries."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from agent.config import SensorConfig, SensorKind
from provisioning.errors import ProvisioningError

DEFAULT_NAMES: dict[SensorKind, str] = {
    "door": "door",
    "motion": "motion",
    "tamper": "tamper",
    "patrol": "patrol",
}


def parse_sensor(spec: str, kind: SensorKind, option: str) -> SensorConfig:
    """`PIN` or `PIN:NAME` -> SensorConfig; the error names the option and the fix."""
    pin_text, _, name = spec.partition(":")
    pin_text, name = pin_text.strip(), name.strip()
    if not pin_text.isdigit():
        raise ProvisioningError(
            f"{option} {spec!r}: expected PIN or PIN:NAME with a BCM GPIO number, "
            "e.g. 17:pintu-utama"
        )
    if ":" in spec and not name:
        raise ProvisioningError(f"{option} {spec!r}: the name after ':' is empty")
    try:
        return SensorConfig(name=name or DEFAULT_NAMES[kind], kind=kind, pin=int(pin_text))
    except ValidationError as exc:
        msg = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise ProvisioningError(f"{option} {spec!r}: {msg}") from None


def parse_wiring(
    *,
    doors: Sequence[str] = (),
    pirs: Sequence[str] = (),
    tampers: Sequence[str] = (),
    buttons: Sequence[str] = (),
) -> list[SensorConfig]:
    """All sensors of a unit, refusing a pin or a name used twice."""
    sensors = [parse_sensor(s, "door", "--door") for s in doors]
    sensors += [parse_sensor(s, "motion", "--pir") for s in pirs]
    sensors += [parse_sensor(s, "tamper", "--tamper") for s in tampers]
    sensors += [parse_sensor(s, "patrol", "--button") for s in buttons]
    if not sensors:
        raise ProvisioningError(
            "a unit needs at least one sensor: --door, --pir, --tamper or --button"
        )
    seen_pins: dict[int, str] = {}
    seen_names: set[str] = set()
    for sensor in sensors:
        if sensor.pin in seen_pins:
            raise ProvisioningError(
                f"pin {sensor.pin} is given to both {seen_pins[sensor.pin]!r} and {sensor.name!r}"
            )
        if sensor.name in seen_names:
            raise ProvisioningError(
                f"two sensors are named {sensor.name!r}: give each one its own name (PIN:NAME)"
            )
        seen_pins[sensor.pin] = sensor.name
        seen_names.add(sensor.name)
    return sensors
