"""Mosquitto 2.0 config and ACL from typed settings: the broker's half of the security policy.

Every key below is in the mosquitto.conf(5) of Mosquitto 2.0.11 (Debian bookworm) and the
rendered file is started by the integration tests. Quirks of that version worth knowing:

- Run as root, Mosquitto drops to the user ``mosquitto`` right after reading this file, before it
  opens certificates, keys, the CRL, the ACL or the persistence folder: all must be readable (and
  the persistence folder writable) by that user. ``user`` below overrides who it becomes.
- Paths are taken from Mosquitto's working directory, not from this file's folder: use absolute.
- With ``crlfile`` set, OpenSSL checks every client against the CRL and refuses *every* client
  once the CRL's nextUpdate has passed; refresh the CRL (``jaga-provision crl refresh``) in time.
- The CRL, the ACL and the server certificate are re-read on SIGHUP; connected clients stay
  connected, so a revoked unit is refused on its next connection, and its ACL block is gone.
- ``use_username_as_clientid`` binds the client id to the certificate's CN: whatever id a client
  sends, the broker uses its CN, so no certificate can take over (kick) the collector's or
  another unit's connection or persistent session. Two connections with one certificate kick
  each other: every collector needs its own identity. Not re-read on SIGHUP (it never changes).
- The acl_file grants every SUBSCRIBE (reading is checked only at delivery), so a unit or an
  operator could join the collectors' shared subscription (``$share/...``): Mosquitto hands each
  message to one member, the read check then drops it for the whole group, and half the
  messages were lost. The dynamic-security plugin checks subscriptions: it denies ``$share/#``
  to every unit and operator it knows and defers everything else to the acl_file (its default
  access is "no opinion"). It reads its file only at start: after adding a unit or an operator
  restart Mosquitto (a SIGHUP is not enough for that part).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from broker.home_assistant import topics as ha_topics
from protocol.ids import check_id
from protocol.topics import (
    ALL_TOPICS,
    DEADLETTER,
    Channel,
    DeviceTopics,
    alert_tree,
    arming,
    arming_filter,
    device_filter,
    site_command_filter,
    witness,
    witness_filters,
)

Access = Literal["read", "write"]
AclRule = tuple[Access, str]

DEFAULT_PERSISTENCE_DIR = Path("/var/lib/mosquitto")
DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
"""Shipped in Debian's mosquitto package under /usr/lib/<multiarch triplet>/."""
ALL_SITES = "*"
HA_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""An operator identity whose sites are ("*",) may act on every site."""
NO_SHARED = "no-shared-subscriptions"
KICK_IDENTITY = "kick"
"""The collector identity named so (CN collector:kick) may only drive the dynamic-security
plugin: it cuts revoked units' and identities' live sessions (provisioning/kick.py)."""
KICK_ROLE = "kick-revoked"
REVOKED_ROLE = "revoked"
"""Given by collector:kick to each revoked username: denies every publish, read and subscribe."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the broker finds its TLS material on the broker machine (absolute paths)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    crlfile: Path


@dataclass(frozen=True, slots=True)
class MosquittoSettings:
    """What the one mutual-TLS listener and the broker's persistence look like."""

    tls: TlsFiles
    acl_file: Path
    dynsec_plugin: Path
    """The dynamic-security plugin (mosquitto_dynamic_security.so) on the broker machine."""
    dynsec_file: Path
    """Its JSON config: who may not subscribe to $share/#."""
    port: int = 8883
    bind: str = "0.0.0.0"
    persistence_dir: Path = DEFAULT_PERSISTENCE_DIR
    autosave_interval_s: int = 60
    """Seconds between saves of the in-memory state (queued messages) to disk."""
    max_queued_messages: int = 1_000_000
    """Per client, beyond in-flight: sized so the collector's session survives an outage."""
    max_queued_bytes: int = 0
    max_packet_size: int = 262_144
    """Whole MQTT packet; pictures are split below it."""
    persistent_client_expiration: str = "14d"
    run_as_user: str | None = None
    """None keeps Mosquitto's default (drop to ``mosquitto`` when started as root)."""
    tls_version: str = "tlsv1.2"
    """Minimum TLS version since Mosquitto 2.0."""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not between 1 and 65535")
        paths = [
            self.tls.cafile,
            self.tls.certfile,
            self.tls.keyfile,
            self.tls.crlfile,
            self.acl_file,
            self.dynsec_plugin,
            self.dynsec_file,
            self.persistence_dir,
        ]
        for path in paths:
            if not path.is_absolute():
                raise ValueError(f"{path}: Mosquitto needs absolute paths")
        values = [str(p) for p in paths] + [self.bind, self.run_as_user or ""]
        for value in values:
            if any(c in value for c in "\r\n\x00"):
                raise ValueError(f"{value!r} contains a line break")
        if not self.persistent_client_expiration[:-1].isdigit() or (
            self.persistent_client_expiration[-1] not in "hdwmy"
        ):
            raise ValueError("persistent_client_expiration is a number and one of h d w m y")


def render_config(settings: MosquittoSettings) -> str:
    """The text of mosquitto.conf for settings."""
    s = settings
    # Mosquitto 2.0 joins location and file name with "/" itself.
    persistence = str(s.persistence_dir).rstrip("/") or "/"
    lines = [
        "# Generated by jaga-provision broker-config; edit the registry, not this file.",
        "# Mosquitto 2.0: reload with SIGHUP (systemctl reload mosquitto) after a revocation.",
        "",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {s.acl_file}",
        "# Denies $share/# subscriptions to units and operators; defers all else to acl_file.",
        f"plugin {s.dynsec_plugin}",
        f"plugin_opt_config_file {s.dynsec_file}",
        *([f"user {s.run_as_user}"] if s.run_as_user else []),
        "",
        "persistence true",
        f"persistence_location {persistence}",
        f"autosave_interval {s.autosave_interval_s}",
        f"persistent_client_expiration {s.persistent_client_expiration}",
        f"max_queued_messages {s.max_queued_messages}",
        f"max_queued_bytes {s.max_queued_bytes}",
        f"max_packet_size {s.max_packet_size}",
        "",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "",
        "# Mutual TLS: every client shows a certificate from the site CA; its CN is its username.",
        f"listener {s.port} {s.bind}",
        f"cafile {s.tls.cafile}",
        f"certfile {s.tls.certfile}",
        f"keyfile {s.tls.keyfile}",
        f"crlfile {s.tls.crlfile}",
        "require_certificate true",
        "use_identity_as_username true",
        "# The client id is the CN too: nobody can kick another client or take its session.",
        "use_username_as_clientid true",
        f"tls_version {s.tls_version}",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class UnitIdentity:
    """A unit at a door: its certificate CN is its device id."""

    site: str
    device: str

    def __post_init__(self) -> None:
        check_id(self.site, "site")
        check_id(self.device, "device")

    @property
    def username(self) -> str:
        return self.device


@dataclass(frozen=True, slots=True)
class CollectorIdentity:
    """The central collector; the colon in its CN can never appear in a device id."""

    name: str
    ha_prefixes: tuple[str, ...] = (ha_topics.DEFAULT_PREFIX,)
    """Home Assistant's discovery prefixes it publishes under (every HA identity's)."""
    role: Literal["collector"] = field(default="collector", init=False)

    def __post_init__(self) -> None:
        check_id(self.name, "collector name", allow_reserved=True)
        for prefix in self.ha_prefixes:
            _prefix(prefix)

    @property
    def username(self) -> str:
        return f"collector:{self.name}"


@dataclass(frozen=True, slots=True)
class OperatorIdentity:
    """A control-room operator who arms, disarms and acknowledges, for the sites named."""

    name: str
    sites: tuple[str, ...] = ()
    """The sites this operator may read and command; ("*",) for every site."""
    role: Literal["operator"] = field(default="operator", init=False)

    def __post_init__(self) -> None:
        check_id(self.name, "operator name", allow_reserved=True)
        for site in self.sites:
            if site != ALL_SITES:
                check_id(site, "site")

    @property
    def username(self) -> str:
        return f"operator:{self.name}"


@dataclass(frozen=True, slots=True)
class WitnessIdentity:
    """An independent witness (Bawaslu, police ...) that reads units' events and publishes only
    its own cosignatures; its signing key is its own, this certificate only lets it in."""

    name: str
    sites: tuple[str, ...] = ()
    """The sites it watches; never every site (a witness names what it watches)."""
    role: Literal["witness"] = field(default="witness", init=False)

    def __post_init__(self) -> None:
        check_id(self.name, "witness name", allow_reserved=True)
        for site in self.sites:
            check_id(site, "site")

    @property
    def username(self) -> str:
        return f"witness:{self.name}"


@dataclass(frozen=True, slots=True)
class HomeAssistantIdentity:
    """A Home Assistant that reads the collector's discovery and states (#20) and writes only
    its panels' coded commands (and its own birth and will, on `homeassistant/status`)."""

    name: str
    prefix: str = ha_topics.DEFAULT_PREFIX
    """Its MQTT integration's discovery prefix."""
    sites: tuple[str, ...] = (ALL_SITES,)
    """The sites whose states it reads and whose panels it commands (`*`: every site)."""
    role: Literal["home-assistant"] = field(default="home-assistant", init=False)

    def __post_init__(self) -> None:
        check_id(self.name, "Home Assistant name", allow_reserved=True)
        _prefix(self.prefix)
        for site in self.sites:
            if site != ALL_SITES:
                check_id(site, "site")

    @property
    def username(self) -> str:
        return f"home-assistant:{self.name}"


Identity = (
    UnitIdentity | CollectorIdentity | OperatorIdentity | WitnessIdentity | HomeAssistantIdentity
)


def acl_rules(identity: Identity) -> list[AclRule]:
    """The topics identity may read and write: the whole policy, as data."""
    if isinstance(identity, UnitIdentity):
        own = DeviceTopics(identity.site, identity.device)
        return [
            ("write", own.status),
            ("write", own.event),
            ("write", own.heartbeat),
            ("write", own.snapshot_filter),
            ("write", own.cmd_result),
            ("write", own.live),
            ("read", own.cmd_filter),
            ("read", arming(identity.site)),
        ]
    if isinstance(identity, CollectorIdentity):
        if identity.name == KICK_IDENTITY:
            return []  # its one topic, $CONTROL/dynamic-security/v1, is the plugin's to allow
        return [
            ("read", ALL_TOPICS),
            ("write", DEADLETTER),
            ("write", arming_filter()),
            ("write", alert_tree()),
            ("write", device_filter(Channel.CMD)),
            # Home Assistant (#20): discovery under its prefix, states under jaga/ha; its
            # birth and its panels' commands, which only the collector reads.
            *(("write", f"{prefix}/#") for prefix in identity.ha_prefixes),
            ("write", ha_topics.TREE),
            *(("read", ha_topics.status(prefix)) for prefix in identity.ha_prefixes),
            ("read", ha_topics.COMMAND_FILTER),
            ("read", ha_topics.COLLECTOR_STATUS_FILTER),  # its own will, if it comes late
        ]
    if isinstance(identity, HomeAssistantIdentity):
        # Discovery stays readable whole: its node level is jaga_<site>[_<device>], which no
        # MQTT filter can cut per site (`+` matches whole levels only). States, units'
        # availability and panels' commands are per site. A command on jaga/ha/<site>/cmd
        # carries no identity the collector could check: this write rule is the check.
        ha: list[AclRule] = [
            ("read", f"{identity.prefix}/#"),
            ("read", ha_topics.COLLECTOR_STATUS_FILTER),
            ("write", ha_topics.status(identity.prefix)),
        ]
        for site in identity.sites:
            where = "+" if site == ALL_SITES else site
            ha += [
                *(("read", topic) for topic in ha_topics.site_read_filters(where)),
                ("read", device_filter(Channel.STATUS, site=where)),  # units' birth and will
                ("write", f"{ha_topics.ROOT}/{where}/cmd"),
            ]
        return ha
    if isinstance(identity, WitnessIdentity):
        # Units' chained events (checkpoints are events too) of its sites, and its own topic.
        watched: list[AclRule] = []
        for site in identity.sites:
            watched += [
                ("read", device_filter(Channel.EVENT, site=site)),
                ("write", witness(site, identity.name)),
            ]
        return watched
    rules: list[AclRule] = [("read", DEADLETTER)]
    for site in identity.sites:
        where = "+" if site == ALL_SITES else site
        rules += [
            *(("read", topic) for topic in operator_reads(where)),
            ("write", site_command_filter(where)),
            ("write", device_filter(Channel.CMD, site=where)),
        ]
    return rules


def operator_reads(where: str) -> list[str]:
    """Everything an operator reads of a site (`+`: of every site) but its units' live frames.

    Named one by one, not `<site>/#`: on Mosquitto 2.0.11 neither an acl_file `topic deny` nor a
    dynamic-security publishClientReceive deny kept live frames from a reader of the whole tree
    (tests/integration/test_web_wall.py); only the collector relays them, to the page."""
    witnesses = witness_filters() if where == "+" else witness_filters((where,))
    return [
        *(device_filter(channel, site=where) for channel in Channel if channel is not Channel.LIVE),
        arming_filter(where),
        alert_tree(where),
        site_command_filter(where),
        *witnesses,
    ]


def _prefix(value: str) -> str:
    if not HA_PREFIX_PATTERN.fullmatch(value):
        raise ValueError(f"Home Assistant prefix {value!r}: use letters, digits, '_' or '-'")
    return value


def render_acl(identities: Iterable[Identity]) -> str:
    """The acl_file: one explicit user block per identity, no patterns, nothing for anyone else."""
    lines = [
        "# Generated by jaga-provision broker-config; revoked units get no block.",
        "# Usernames are certificate CNs (use_identity_as_username).",
    ]
    seen: set[str] = set()
    for identity in identities:
        if identity.username in seen:
            raise ValueError(f"two identities share the username {identity.username!r}")
        seen.add(identity.username)
        lines.append("")
        lines.append(f"user {identity.username}")
        lines.extend(f"topic {access} {topic}" for access, topic in acl_rules(identity))
    return "\n".join(lines) + "\n"


def render_dynsec(identities: Iterable[Identity]) -> str:
    """The dynamic-security plugin's JSON: units and operators may not join $share/ groups.

    Default access is false, which in this plugin means "no opinion": whatever no rule here
    matches (every publish, every other subscription, every collector) the acl_file decides."""
    clients = [
        {"username": i.username, "roles": [{"rolename": NO_SHARED}]}
        for i in identities
        if not isinstance(i, CollectorIdentity)
    ]
    clients += [
        {"username": i.username, "roles": [{"rolename": KICK_ROLE}]}
        for i in identities
        if isinstance(i, CollectorIdentity) and i.name == KICK_IDENTITY
    ]
    control = "$CONTROL/dynamic-security/#"
    config = {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": clients,
        "groups": [],
        "roles": [
            {
                "rolename": NO_SHARED,
                "textname": "only collectors share the collectors' subscription",
                "acls": [
                    {
                        "acltype": "subscribePattern",
                        "topic": "$share/#",
                        "priority": 0,
                        "allow": False,
                    }
                ],
            },
            {
                "rolename": KICK_ROLE,
                "textname": "collector:kick cuts revoked clients' sessions, nothing else",
                "acls": [
                    {"acltype": kind, "topic": control, "priority": 0, "allow": True}
                    for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
                ],
            },
        ],
    }
    return json.dumps(config, indent=2) + "\n"
