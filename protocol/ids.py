"""Site and device identifiers: the names that become topic levels and certificate subjects."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
RESERVED_IDS = frozenset(
    {"arming", "alert", "cmd", "deadletter", "collector", "operator", "witness"}
)
ID_RULE = "1-48 lowercase letters, digits or '-', starting and ending with a letter or digit"


class InvalidIdentifier(ValueError):
    """A site, device or sensor name that cannot be used on the wire."""


def check_id(value: str, what: str = "identifier", *, allow_reserved: bool = False) -> str:
    """Return value if it is a usable identifier, else raise InvalidIdentifier naming the rule."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidIdentifier(f"{what} {value!r} is not valid: use {ID_RULE}")
    if not allow_reserved and value in RESERVED_IDS:
        reserved = ", ".join(sorted(RESERVED_IDS))
        raise InvalidIdentifier(f"{what} {value!r} is reserved (reserved names: {reserved})")
    return value


def _site(value: str) -> str:
    return check_id(value, "site")


def _device(value: str) -> str:
    return check_id(value, "device")


def _sensor(value: str) -> str:
    return check_id(value, "sensor", allow_reserved=True)


SiteId = Annotated[str, AfterValidator(_site)]
DeviceId = Annotated[str, AfterValidator(_device)]
SensorName = Annotated[str, AfterValidator(_sensor)]
