"""Choosing the gpiozero pin factory by name; the mock one drives the simulator and tests."""

from __future__ import annotations

from typing import Any


class PinFactoryError(RuntimeError):
    """The requested GPIO library is not usable on this machine."""


def make_pin_factory(name: str) -> Any:
    """A gpiozero pin factory; raises PinFactoryError with what to install when it is missing."""
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        if name == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if name == "pigpio":
            from gpiozero.pins.pigpio import PiGPIOFactory

            return PiGPIOFactory()
        if name == "native":
            from gpiozero.pins.native import NativeFactory

            return NativeFactory()
    except ImportError as exc:
        raise PinFactoryError(
            f"pin_factory {name!r} needs a GPIO library that is not installed ({exc}); on "
            "Raspberry Pi OS: sudo apt install python3-lgpio, and make the venv with "
            "--system-site-packages"
        ) from None
    except Exception as exc:  # gpiozero raises its own errors off a Pi
        raise PinFactoryError(f"pin_factory {name!r} cannot start here: {exc}") from None
    raise PinFactoryError(f"unknown pin_factory {name!r}")
