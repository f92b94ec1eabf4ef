"""Topic names under jaga/v1: builders for each channel and a strict parser for what arrives."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.ids import InvalidIdentifier, check_id

ROOT = "jaga/v1"
DEADLETTER = f"{ROOT}/deadletter"
SHARED_GROUP = "jaga-collectors"
ALL_TOPICS = f"{ROOT}/#"
"""Every topic of the contract (what the collector reads)."""


class Channel(StrEnum):
    """What a device-level topic carries."""

    STATUS = "status"
    EVENT = "event"
    HEARTBEAT = "heartbeat"
    SNAPSHOT = "snapshot"
    CMD = "cmd"
    CMD_RESULT = "cmd-result"
    LIVE = "live"


class TopicError(ValueError):
    """A topic that is not part of the Jaga contract."""


@dataclass(frozen=True, slots=True)
class DeviceTopics:
    """The topics one unit publishes on and listens to."""

    site: str
    device: str

    def __post_init__(self) -> None:
        check_id(self.site, "site")
        check_id(self.device, "device")

    @property
    def prefix(self) -> str:
        return f"{ROOT}/{self.site}/{self.device}"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def event(self) -> str:
        return f"{self.prefix}/event"

    @property
    def heartbeat(self) -> str:
        return f"{self.prefix}/heartbeat"

    @property
    def cmd_result(self) -> str:
        return f"{self.prefix}/cmd-result"

    @property
    def live(self) -> str:
        """Frames while a viewer holds a lease: QoS 0, never retained, never stored."""
        return f"{self.prefix}/live"

    @property
    def cmd_filter(self) -> str:
        return f"{self.prefix}/cmd/+"

    @property
    def snapshot_filter(self) -> str:
        return f"{self.prefix}/snapshot/+"

    def snapshot(self, event_id: str) -> str:
        return f"{self.prefix}/snapshot/{_check_level(event_id)}"

    def cmd(self, name: str) -> str:
        return f"{self.prefix}/cmd/{_check_level(name)}"


def arming(site: str) -> str:
    """Retained arming state of a site."""
    return f"{ROOT}/{check_id(site, 'site')}/arming"


def alert(site: str, alert_id: str) -> str:
    """Retained active alert of a site."""
    return f"{ROOT}/{check_id(site, 'site')}/alert/{_check_level(alert_id)}"


def witness(site: str, name: str) -> str:
    """A witness's cosignatures and fork reports for a site (`witness` is a reserved level)."""
    return f"{ROOT}/{check_id(site, 'site')}/witness/{_check_level(name)}"


def witness_filters(sites: tuple[str, ...] = ()) -> list[str]:
    """Every witness's topic of these sites (`sites` empty: of every site)."""
    return [f"{ROOT}/{_check_level(s)}/witness/+" for s in sites] or [f"{ROOT}/+/witness/+"]


def parse_witness_topic(topic: str) -> tuple[str, str] | None:
    """(site, witness name) of jaga/v1/<site>/witness/<name>; None for any other topic."""
    levels = topic.split("/")
    if len(levels) != 5 or "/".join(levels[:2]) != ROOT or levels[3] != "witness":
        return None
    return levels[2], levels[4]


def live_filters(sites: tuple[str, ...] = ()) -> list[str]:
    """Every unit's live frames of these sites (`sites` empty: of every site)."""
    return [f"{ROOT}/{_check_level(s)}/+/live" for s in sites] or [f"{ROOT}/+/+/live"]


def parse_live_topic(topic: str) -> tuple[str, str] | None:
    """(site, device) of jaga/v1/<site>/<device>/live; None for any other topic."""
    levels = topic.split("/")
    if len(levels) != 5 or "/".join(levels[:2]) != ROOT or levels[4] != Channel.LIVE.value:
        return None
    try:
        return check_id(levels[2], "site"), check_id(levels[3], "device")
    except InvalidIdentifier:
        return None


def site_cmd(site: str, name: str) -> str:
    """Site-wide command from the control room (arm, disarm)."""
    return f"{ROOT}/{check_id(site, 'site')}/cmd/{_check_level(name)}"


def collector_filters(
    channels: tuple[Channel, ...], *, shared: bool = True, sites: tuple[str, ...] = ()
) -> list[str]:
    """Subscription filters for the collector, optionally as a shared subscription, for every
    site (`sites` empty) or only those sites (collectors that split the sites between them)."""
    filters = []
    for site in tuple(_check_level(s) for s in sites) or ("+",):
        for channel in channels:
            suffix = f"{channel.value}/#" if channel is Channel.SNAPSHOT else channel.value
            topic = f"{ROOT}/{site}/+/{suffix}"
            filters.append(f"$share/{SHARED_GROUP}/{topic}" if shared else topic)
    return filters


def device_filter(channel: Channel, *, site: str = "+", device: str = "+") -> str:
    """Filter for one channel of a site's units (`+`: every site or every unit)."""
    suffix = f"{channel.value}/+" if channel in (Channel.SNAPSHOT, Channel.CMD) else channel.value
    return f"{ROOT}/{_level_or_any(site)}/{_level_or_any(device)}/{suffix}"


def alert_filter(site: str = "+") -> str:
    """Filter for the retained alerts of a site (`+`: of every site)."""
    return f"{ROOT}/{_level_or_any(site)}/alert/+"


def alert_tree(site: str = "+") -> str:
    """Every alert topic of a site, at any depth (`+`: of every site)."""
    return f"{ROOT}/{_level_or_any(site)}/alert/#"


def arming_filter(site: str = "+") -> str:
    """Filter for the retained arming state of a site (`+`: of every site)."""
    return f"{ROOT}/{_level_or_any(site)}/arming"


def site_command_filter(site: str = "+") -> str:
    """Filter for operators' commands to a site (`+`: to every site)."""
    return f"{ROOT}/{_level_or_any(site)}/cmd/+"


def parse_alert_topic(topic: str) -> tuple[str, str] | None:
    """(site, alert id) of jaga/v1/<site>/alert/<id>; None for any other topic."""
    levels = topic.split("/")
    if len(levels) != 5 or "/".join(levels[:2]) != ROOT or levels[3] != "alert":
        return None
    return levels[2], levels[4]


def device_topic_of(topic: str) -> ParsedTopic | None:
    """A unit's topic taken apart; None for anything else (a site's alert or arming)."""
    try:
        return parse_device_topic(topic)
    except TopicError:
        return None


def site_command_filters(sites: tuple[str, ...] = ()) -> list[str]:
    """Operators' site commands for every site (`sites` empty) or only those sites."""
    return [SITE_COMMANDS] if not sites else [f"{ROOT}/{_check_level(s)}/cmd/+" for s in sites]


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A device-level topic taken apart."""

    site: str
    device: str
    channel: Channel
    arg: str | None = None


def parse_device_topic(topic: str) -> ParsedTopic:
    """Take a device topic apart; raise TopicError for anything outside the contract."""
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise TopicError(f"topic {topic!r} contains a wildcard or NUL")
    levels = topic.split("/")
    if len(levels) < 5 or "/".join(levels[:2]) != ROOT:
        raise TopicError(f"topic {topic!r} is not under {ROOT}/<site>/<device>/")
    _, _, site, device, channel_name, *rest = levels
    try:
        check_id(site, "site")
        check_id(device, "device")
    except InvalidIdentifier as exc:
        raise TopicError(str(exc)) from exc
    try:
        channel = Channel(channel_name)
    except ValueError:
        raise TopicError(f"topic {topic!r} has unknown channel {channel_name!r}") from None
    takes_arg = channel in (Channel.SNAPSHOT, Channel.CMD)
    if takes_arg != (len(rest) == 1) or len(rest) > 1:
        raise TopicError(f"topic {topic!r} has the wrong number of levels for {channel.value}")
    arg = _check_level(rest[0]) if rest else None
    return ParsedTopic(site, device, channel, arg)


def _level_or_any(value: str) -> str:
    return value if value == "+" else _check_level(value)


def _check_level(value: str) -> str:
    if not value or len(value) > 64 or value in (".", "..") or any(c in value for c in "/+#\x00"):
        raise TopicError(f"topic level {value!r} is empty, too long or contains / + # or NUL")
    return value


SITE_COMMANDS = f"{ROOT}/+/cmd/+"
"""Filter for operators' site commands (arm, disarm, ack, resolve)."""


def parse_site_command(topic: str) -> tuple[str, str] | None:
    """(site, command) of jaga/v1/<site>/cmd/<name>; None for any other topic.

    The reserved `cmd` level (never a unit id) tells it from a unit's topics.
    """
    levels = topic.split("/")
    if len(levels) != 5 or "/".join(levels[:2]) != ROOT or levels[3] != "cmd":
        return None
    return levels[2], levels[4]
