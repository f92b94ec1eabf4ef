"""The collector's TOML config, validated so a typo is a clear message and not a silent default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from broker.alerts.config import AlertsConfig
from broker.home_assistant.config import HomeAssistantConfig
from broker.web.config import WebConfig
from kernel.config import ClientTls, Strict, load_toml_model
from protocol.ids import SiteId


class MqttConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    client_id: str = Field(default="jaga-collector-1", min_length=1, max_length=64)
    keepalive_s: int = Field(default=15, ge=5, le=600)
    session_expiry_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="how long the broker keeps our queue offline"
    )
    receive_maximum: int = Field(default=2000, ge=1, le=65535)
    shared: bool = Field(
        default=False,
        description="join $share/jaga-collectors (for 2+ collectors; Mosquitto 2.0 forgets "
        "shared subscriptions when it restarts, the resend path then repairs the loss)",
    )
    sites: list[SiteId] = Field(
        default_factory=list,
        description="the sites this collector takes (empty: every site). Collectors that split "
        "the sites between them scale out without splitting any unit's hash chain",
    )
    tls: ClientTls | None = None


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL, e.g. http://127.0.0.1:8086")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class InfluxConfig(Strict):
    url: HttpUrl = Field(default="http://127.0.0.1:8086", description="InfluxDB base URL")
    token: str = Field(default="", description="API token (2.x/3) or user:password (1.8)")
    org: str = "jaga"
    bucket: str = Field(default="jaga/autogen", description="bucket; on 1.8 database/rp")
    query_url: str | None = Field(
        default=None, description="InfluxQL /query endpoint base URL if not the same as url"
    )
    database: str | None = Field(
        default=None, description="InfluxQL database (default: the bucket's part before '/')"
    )
    timeout_ms: int = Field(default=10_000, ge=100)
    batch_max: int = Field(default=2000, ge=1, le=50_000)
    flush_ms: int = Field(default=100, ge=1, le=10_000)

    @property
    def influxql_url(self) -> str:
        return self.query_url or self.url

    @property
    def influxql_database(self) -> str:
        return self.database or self.bucket.split("/", 1)[0]


class CollectorConfig(Strict):
    data_dir: Path = Field(default=Path("/var/lib/jaga-collector"))
    spool_max_mb: int = Field(
        default=2048, ge=1, description="disk kept for batches while InfluxDB is away"
    )
    stats_interval_s: float = Field(default=10.0, gt=0, description="collector's own figures")
    unit_rate_per_s: float = Field(
        default=50.0, gt=0, description="messages per second per unit before it waits its turn"
    )
    unit_burst: float = Field(default=500.0, ge=1, description="burst allowed above that rate")
    backlog_max_mb: int = Field(default=512, ge=1, description="disk for over-budget messages")
    verify_workers: int | None = Field(
        default=None,
        ge=0,
        le=16,
        description="processes checking the signatures of big batches beside the collector "
        "(absent: one per core but one, at most 4; 0: every signature in the collector itself)",
    )
    evidence_grace_s: float = Field(
        default=120.0,
        gt=0,
        description="after an event is stored, how long its pictures may take before the unit "
        "is asked for them again (also the first wait between asks, doubling each time)",
    )
    evidence_max_mb: int = Field(
        default=64 * 1024,
        ge=1,
        description="the most the evidence store keeps in all; past it pictures are refused "
        "and a critical evidence-refused alert is raised (events are still stored)",
    )
    evidence_unit_max_mb: int = Field(
        default=2048,
        ge=1,
        description="the most pictures one unit may bring into the evidence store",
    )
    evidence_min_free_mb: int = Field(
        default=512,
        ge=0,
        description="disk space pictures never take: kept free for events, the spool and logs",
    )
    registry_dir: Path = Field(description="the provisioning directory (certificates of units)")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    influx: InfluxConfig = Field(default_factory=InfluxConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    web: WebConfig | None = Field(
        default=None, description="the guard-post page; absent: no page is served"
    )
    home_assistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig,
        description="Home Assistant's MQTT discovery, published by the collector",
    )


def load_config(path: Path) -> CollectorConfig:
    """Read and validate a collector.toml; relative paths are taken from the file's folder."""
    config = load_toml_model(path, CollectorConfig)
    base = path.parent

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    mqtt = config.mqtt
    if mqtt.tls is not None:
        tls = ClientTls(ca=fix(mqtt.tls.ca), cert=fix(mqtt.tls.cert), key=fix(mqtt.tls.key))
        mqtt = mqtt.model_copy(update={"tls": tls})
    return config.model_copy(
        update={
            "data_dir": fix(config.data_dir),
            "registry_dir": fix(config.registry_dir),
            "alerts": config.alerts.model_copy(update={"registry_dir": fix(config.registry_dir)}),
            "mqtt": mqtt,
            "web": config.web.resolved(base) if config.web is not None else None,
        }
    )
