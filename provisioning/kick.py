"""Cut a revoked unit's or identity's live session at once: `jaga-provision broker-kick`.

Mosquitto 2.0.11 checks the CRL only when a client connects, so a revoked unit that stays
connected would keep publishing until the next reconnection. The dynamic-security plugin (loaded
by our mosquitto.conf) acts on live sessions: through its `$CONTROL/dynamic-security/v1` topic
the identity ``collector:kick`` (made with ``jaga-provision identity add collector kick``; its
acl_file block is empty, its dynsec role may only use that topic) gives each revoked username
a role that denies every publish, delivery and subscription, then disables it. Changing a
client's roles disconnects it; measured on 2.0.11 the session drops ~2 ms after the command.

Why both: for certificate clients (``use_identity_as_username``) the plugin's "disabled" flag is
never checked at connect (it guards only password logins), so the unit reconnects at once; the
deny role makes that new session worthless (PUBACK 135 "not authorized") until the broker has
the new CRL (broker-config + reload), after which the TLS handshake itself fails.

Idempotent: every run sends the whole list of revoked usernames from the registry, so a
systemd timer on the server (every 30 s, against the server's copy of the registry) and a run
from the technician's laptop right after `device revoke` may both happen. The plugin saves
these changes in its own JSON; the next broker-config rewrites that file without the revoked
clients, and the CRL installed with it refuses them.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker.mosquitto import KICK_IDENTITY, REVOKED_ROLE
from provisioning.errors import ProvisioningError
from provisioning.registry import Registry

CONTROL = "$CONTROL/dynamic-security/v1"
RESPONSE = f"{CONTROL}/response"
HARMLESS = ("already exists", "Role already exists", "Client already exists")


def revoked_usernames(registry: Registry) -> list[str]:
    """MQTT usernames (certificate CNs) of every revoked unit and service identity.

    An identity revoked and made again under the same name holds a live certificate: it is
    left alone (its old certificate is refused by the CRL)."""
    names: set[str] = set()
    for entry in registry.ca_log().issued:
        if entry.revoked_at is None:
            continue
        if entry.kind == "device" and entry.device:
            names.add(entry.device)
        elif entry.kind in ("collector", "operator", "witness") and entry.name:
            current = registry.identity_certificate(entry.kind, entry.name)
            if current is None or current.serial_number == entry.serial:
                names.add(f"{entry.kind}:{entry.name}")
    return sorted(names)


def kick_commands(usernames: list[str]) -> dict[str, Any]:
    """The dynamic-security commands that cut and mute these usernames."""
    deny = [
        {"acltype": kind, "topic": "#", "priority": 1000, "allow": False}
        for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    commands: list[dict[str, Any]] = [
        {"command": "createRole", "rolename": REVOKED_ROLE, "acls": deny}
    ]
    for name in usernames:
        commands += [
            {"command": "createClient", "username": name},
            {"command": "addClientRole", "username": name, "rolename": REVOKED_ROLE,
             "priority": 1000},
            {"command": "disableClient", "username": name},
        ]  # fmt: skip
    return {"commands": commands}


@dataclass(frozen=True, slots=True)
class KickResult:
    usernames: list[str]
    errors: list[str]


def kick(
    registry: Registry, host: str, port: int, usernames: list[str], *, timeout_s: float = 10.0
) -> KickResult:
    """Send the commands as collector:kick and wait for the plugin's answer."""
    cert = registry.identity_path("collector", KICK_IDENTITY, ".crt")
    key = registry.identity_path("collector", KICK_IDENTITY, ".key")
    if not cert.exists() or not key.exists():
        raise ProvisioningError(
            f"no kick identity ({cert}): run `jaga-provision identity add collector "
            f"{KICK_IDENTITY}`, then broker-config and restart the broker once"
        )
    if not usernames:
        return KickResult([], [])
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"kick-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )  # fmt: skip
    client.tls_set(ca_certs=str(registry.ca_cert_path), certfile=str(cert), keyfile=str(key))
    subscribed, answered = threading.Event(), threading.Event()
    reply: list[bytes] = []
    client.on_connect = lambda c, _u, _f, rc, _p: (
        c.subscribe(RESPONSE, qos=1) if not rc.is_failure else answered.set()
    )
    client.on_subscribe = lambda *_a: subscribed.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        reply.append(bytes(msg.payload))
        answered.set()

    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=30)
    except (ssl.SSLError, OSError) as exc:
        raise ProvisioningError(f"cannot reach the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        if not subscribed.wait(timeout_s):
            raise ProvisioningError(
                f"the broker at {host}:{port} did not let collector:{KICK_IDENTITY} in "
                "(is it in the broker's config? run broker-config and restart the broker)"
            )
        client.publish(CONTROL, json.dumps(kick_commands(usernames)), qos=1)
        if not answered.wait(timeout_s) or not reply:
            raise ProvisioningError(
                f"the broker's dynamic-security plugin did not answer within {timeout_s:.0f} s"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    responses = json.loads(reply[0]).get("responses", [])
    errors = [
        f"{r.get('command')}: {r['error']}"
        for r in responses
        if r.get("error") and not any(h in r["error"] for h in HARMLESS)
    ]
    return KickResult(usernames, errors)
