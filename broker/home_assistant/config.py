"""The `[home_assistant]` section of collector.toml: off unless `enabled = true`."""

from __future__ import annotations

from pydantic import Field

from broker.home_assistant.topics import DEFAULT_PREFIX
from broker.i18n import DEFAULT as DEFAULT_LANGUAGE
from broker.i18n import Language
from kernel.config import Strict

TOPIC_LEVEL = r"^[A-Za-z0-9_-]{1,64}$"


class HomeAssistantConfig(Strict):
    """What the collector publishes for Home Assistant's MQTT discovery."""

    enabled: bool = Field(
        default=False, description="publish discovery, states and the alarm panel for HA"
    )
    prefix: str = Field(
        default=DEFAULT_PREFIX,
        pattern=TOPIC_LEVEL,
        description="HA's discovery prefix, as its MQTT integration is set (another than "
        "homeassistant: give it to `jaga-provision identity add home-assistant <name> "
        "--prefix`, so the broker's ACL grants it)",
    )
    language: Language = Field(
        default=DEFAULT_LANGUAGE, description='entity names in "id" (Bahasa Indonesia) or "en"'
    )
    command_max_age_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="an arm/disarm from HA older than this (it waited in the broker while the "
        "collector was away) is refused, never carried out late",
    )
    code_max_failures: int = Field(
        default=5, ge=1, le=100, description="wrong panel codes per site before a pause"
    )
    code_lockout_s: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="window they count in, and the first pause (twice as long at each pause "
        "again, at most a day; no code is checked while a pause lasts)",
    )
    registry_poll_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="how often the registry is read for new and "
        "removed units (a removed unit's entities are removed from HA)",
    )
