"""The Jaga unit: reads sensors on a Raspberry Pi and publishes signed events."""

__version__ = "0.1.0"
