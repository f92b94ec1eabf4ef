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
import queue
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker.mosquitto import KICK_IDENTITY, REVOKED_ROLE
from provisioning.errors import ProvisioningError
from provisioning.records import IssuedCert
from provisioning.registry import Registry

CONTROL = "$CONTROL/dynamic-security/v1"
RESPONSE = f"{CONTROL}/response"
HARMLESS = ("already exists", "Role already exists", "Client already exists")


def revoked_usernames(registry: Registry) -> list[str]:
    """MQTT usernames (certificate CNs) of every unit whose newest certificate is revoked
    (`device revoke` revokes its whole lineage) or was signed by an issuing CA the root has
    revoked (its generation is shut out; the unit comes back by enrolling under the next),
    and of every revoked service identity.

    A unit or identity revoked and made again under the same name holds a live certificate:
    it is left alone (its old certificate is refused by the CRL), and a kick run lifts the
    mute an earlier run gave it (kick)."""
    log = registry.ca_log()
    gone = set(log.issuing_revoked)
    names: set[str] = set()
    newest: dict[tuple[str, str], IssuedCert] = {}
    for entry in log.issued:
        if entry.kind == "device" and entry.site and entry.device:
            key = (entry.site, entry.device)
            if key not in newest or entry.serial > newest[key].serial:
                newest[key] = entry
        elif entry.revoked_at is not None and entry.kind in ("collector", "operator", "witness"):
            current = registry.identity_certificate(entry.kind, entry.name or "")
            if entry.name and (current is None or current.serial_number == entry.serial):
                names.add(f"{entry.kind}:{entry.name}")
    for entry in newest.values():
        if entry.device and (entry.revoked_at is not None or entry.issuer in gone):
            names.add(entry.device)
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


def lift_commands(usernames: list[str]) -> list[dict[str, Any]]:
    """The commands that give a muted username back its session (removeClientRole, enable)."""
    commands: list[dict[str, Any]] = []
    for name in usernames:
        commands += [
            {"command": "removeClientRole", "username": name, "rolename": REVOKED_ROLE},
            {"command": "enableClient", "username": name},
        ]
    return commands


def muted(listing: dict[str, Any]) -> list[str]:
    """Usernames holding the revoked role in a `listClients` (verbose) answer."""
    clients = listing.get("data", {}).get("clients", [])
    return sorted(
        c["username"]
        for c in clients
        if isinstance(c, dict)
        and any(r.get("rolename") == REVOKED_ROLE for r in c.get("roles", []))
    )


@dataclass(frozen=True, slots=True)
class KickResult:
    usernames: list[str]
    errors: list[str]
    lifted: list[str] = field(default_factory=list)
    """Muted by an earlier run, live again (re-enrolled under a new issuing CA, made again)."""


def kick(
    registry: Registry, host: str, port: int, usernames: list[str], *, timeout_s: float = 10.0
) -> KickResult:
    """As collector:kick: mute and cut `usernames`, and give back their sessions to the
    clients an earlier run muted that are not among them any more (the plugin keeps its
    changes until the broker restarts: a reload does not read its file again)."""
    cert = registry.identity_path("collector", KICK_IDENTITY, ".crt")
    key = registry.identity_path("collector", KICK_IDENTITY, ".key")
    if not cert.exists() or not key.exists():
        raise ProvisioningError(
            f"no kick identity ({cert}): run `jaga-provision identity add collector "
            f"{KICK_IDENTITY}`, then broker-config and restart the broker once"
        )
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"kick-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )  # fmt: skip
    client.tls_set(ca_certs=str(registry.ca_cert_path), certfile=str(cert), keyfile=str(key))
    subscribed = threading.Event()
    replies: queue.Queue[bytes] = queue.Queue()
    client.on_connect = lambda c, _u, _f, rc, _p: (
        c.subscribe(RESPONSE, qos=1) if not rc.is_failure else None
    )
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = lambda _c, _u, msg: replies.put(bytes(msg.payload))

    def ask(commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        client.publish(CONTROL, json.dumps({"commands": commands}), qos=1)
        try:
            answer = json.loads(replies.get(timeout=timeout_s))
        except queue.Empty:
            raise ProvisioningError(
                f"the broker's dynamic-security plugin did not answer within {timeout_s:.0f} s"
            ) from None
        responses: list[dict[str, Any]] = answer.get("responses", [])
        return responses

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
        answered = ask([{"command": "listClients", "verbose": True, "count": -1}])
        listing = answered[0] if answered else {}
        lifted = [n for n in muted(listing) if n not in set(usernames)]
        commands = (kick_commands(usernames)["commands"] if usernames else []) + lift_commands(
            lifted
        )
        responses = ask(commands) if commands else []
    finally:
        client.disconnect()
        client.loop_stop()
    errors = [
        f"{r.get('command')}: {r['error']}"
        for r in [listing, *responses]
        if r.get("error") and not any(h in r["error"] for h in HARMLESS)
    ]
    return KickResult(usernames, errors, lifted)
