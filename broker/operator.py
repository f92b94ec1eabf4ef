"""Operators' commands from a terminal: arm, disarm, ack and resolve travel over MQTT with the
operator's own certificate and are signed with its key (fresh, with a nonce), so the broker's
ACL, the collector and the audit trail all know who it was, and nobody can replay them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt

from broker.config import CollectorConfig
from kernel.config import ClientTls
from kernel.mqtt import make_client
from protocol import models, topics
from protocol.alerting import ArmingState
from protocol.commands import SiteCommand, load_pem_key, sign_command

SiteCommandName = Literal["arm", "disarm", "ack", "resolve", "bypass", "unbypass"]


ARMING = ("arm", "disarm", "bypass", "unbypass")
"""Commands that change the site's retained arming state (the answer to wait for)."""


class OperatorError(Exception):
    """The command could not be sent; the message says why and what to do."""


def operator_files(config: CollectorConfig, name: str) -> tuple[Path, Path]:
    ident = config.registry_dir / "identities"
    cert, key = ident / f"operator-{name}.crt", ident / f"operator-{name}.key"
    if not cert.exists() or not key.exists():
        raise OperatorError(
            f"no operator certificate for {name!r} in {ident}: "
            f"make one with `jaga-provision identity add operator {name}`"
        )
    return cert, key


def signed(
    cert: Path, key: Path, site: str, name: SiteCommandName, by: str, **fields: Any
) -> bytes:
    """The command as `operator:<by>` signs it now, with a fresh nonce (a ValueError if bad)."""
    cmd = SiteCommand(site=site, cmd=name, by=f"operator:{by}", ts=time.time_ns(), **fields)
    try:
        pem, private = cert.read_bytes(), load_pem_key(key.read_bytes())
    except OSError as exc:
        raise OperatorError(f"cannot read the operator's key or certificate: {exc}") from None
    return sign_command(cmd, private, pem)


def send(
    config: CollectorConfig,
    site: str,
    name: SiteCommandName,
    by: str,
    *,
    alert_id: str | None = None,
    note: str | None = None,
    timeout_s: float = 10.0,
    **fields: Any,
) -> ArmingState | None:
    """Publish the command signed as operator `by`; for arm, disarm and bypass, return the
    site's arming state once it changed (None: no change seen in time).

    fields: zone, code (arm, disarm); device, sensor, for_s, reason (bypass); device, sensor
    (unbypass: refused here when the site's retained state shows no such bypass)."""
    cert, key = operator_files(config, by)
    m = config.mqtt
    if m.tls is None:
        raise OperatorError("the collector config has no [mqtt.tls]: operators need mutual TLS")
    payload = signed(cert, key, site, name, by, how="cli", alert_id=alert_id, note=note, **fields)
    # The broker takes the client id from the certificate (use_username_as_clientid): say it.
    tls = ClientTls(ca=m.tls.ca, cert=cert, key=key)
    client = make_client(tls, f"operator:{by}", field="mqtt.tls (and the operator's identity)")
    states: list[ArmingState] = []
    changed, seen = threading.Event(), threading.Event()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            states.append(models.parse(ArmingState, bytes(msg.payload)))
        except models.WireError:
            return
        seen.set()
        if len(states) > 1 or not msg.retain:
            changed.set()

    client.on_message = on_message
    try:
        client.connect(m.host, m.port, keepalive=30)
    except OSError as exc:
        raise OperatorError(f"cannot reach the broker at {m.host}:{m.port}: {exc}") from None
    client.loop_start()
    try:
        if name in ARMING:
            client.subscribe(topics.arming(site), qos=1)
        if name == "unbypass":  # the collector only logs a refusal: say it here
            seen.wait(min(timeout_s, 5.0))
            sensor = (fields.get("device"), fields.get("sensor"))
            if not any(
                (b.device, b.sensor) == sensor for s in states[:1] for b in s.bypassed or ()
            ):
                raise OperatorError(
                    f"{sensor[0]}/{sensor[1]} is not bypassed at {site}: nothing to lift"
                )
        info = client.publish(topics.site_cmd(site, name), payload, qos=1)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise OperatorError("the broker did not acknowledge the command (certificate?)")
        if name in ARMING:
            changed.wait(timeout_s)
            return states[-1] if states else None
        return None
    finally:
        client.disconnect()
        client.loop_stop()
