"""Topics of the Home Assistant side: discovery under HA's prefix, states under `jaga/ha`.

`jaga/ha` lies outside `jaga/v1` (the units' contract): no unit's ACL reaches it, the
collector writes it, Home Assistant reads it and writes only `jaga/ha/<site>/cmd`. The site
level's reserved names (`arming`, `cmd`, `collector`) can be no unit's id, so
`jaga/ha/<site>/arming` never meets a unit's `jaga/ha/<site>/<device>/...`.
"""

from __future__ import annotations

from protocol.ids import InvalidIdentifier, check_id

ROOT = "jaga/ha"
COMMAND_FILTER = f"{ROOT}/+/cmd"
"""What Home Assistant may write and the collector reads: its panels' coded commands."""
TREE = f"{ROOT}/#"
COLLECTOR_STATUS_FILTER = f"{ROOT}/collector/+/status"
DEFAULT_PREFIX = "homeassistant"
"""HA's MQTT integration's default discovery prefix (the one the broker ACL grants)."""


def site_read_filters(where: str) -> tuple[str, ...]:
    """What Home Assistant reads under jaga/ha of one site (`+`: of every site), beside the
    collector's status: never another Home Assistant's coded commands."""
    return (
        f"{ROOT}/{where}/+/state",
        f"{ROOT}/{where}/+/evidence",
        f"{ROOT}/{where}/arming",
        f"{ROOT}/{where}/arming/+",
    )


LEFT_FILTERS = (f"{DEFAULT_PREFIX}/status", COMMAND_FILTER, COLLECTOR_STATUS_FILTER)
"""What a kept session may still hold from when the bridge was on (default prefix)."""


def status(prefix: str) -> str:
    """Where HA says `online` when it (re)starts (its birth message) and `offline` (its will)."""
    return f"{prefix}/status"


def collector_status(client_id: str) -> str:
    """The collector's own availability: `online` retained, `offline` as its will."""
    return f"{ROOT}/collector/{_level(client_id)}/status"


def unit_state(site: str, device: str) -> str:
    """One retained JSON document per unit: every entity of it reads its own key."""
    return f"{ROOT}/{check_id(site, 'site')}/{check_id(device, 'device')}/state"


def unit_image(site: str, device: str) -> str:
    """The unit's latest evidence still, JPEG bytes, retained."""
    return f"{ROOT}/{check_id(site, 'site')}/{check_id(device, 'device')}/evidence"


def panel_state(site: str, zone: str | None = None) -> str:
    """The alarm panel's state word (disarmed, arming, armed_away, pending, triggered)."""
    base = f"{ROOT}/{check_id(site, 'site')}/arming"
    return base if zone is None else f"{base}/{check_id(zone, 'zone', allow_reserved=True)}"


def panel_command(site: str) -> str:
    return f"{ROOT}/{check_id(site, 'site')}/cmd"


def parse_command(topic: str) -> str | None:
    """The site of jaga/ha/<site>/cmd; None for any other topic."""
    levels = topic.split("/")
    if len(levels) != 4 or "/".join(levels[:2]) != ROOT or levels[3] != "cmd":
        return None
    try:
        return check_id(levels[2], "site")
    except InvalidIdentifier:
        return None


def discovery(prefix: str, component: str, node: str, object_id: str) -> str:
    """`<prefix>/<component>/<node_id>/<object_id>/config`, as HA's discovery reads it."""
    return f"{prefix}/{component}/{_level(node)}/{_level(object_id)}/config"


def _level(value: str) -> str:
    if not value or any(c in value for c in "/+#\x00") or len(value) > 128:
        raise ValueError(f"{value!r} cannot be an MQTT topic level")
    return value
