"""`jaga-agent selftest`: what a technician checks on site before leaving, as a pass/fail table."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent import host
from agent.config import AgentConfig, load_config
from agent.identity import IdentityError, load_private_key
from kernel.config import ConfigError
from kernel.mqtt import make_client

MIN_FREE_MB = 200
CERT_WARN_DAYS = 30


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(
    config_path: Path,
    *,
    pin_factory: Any = None,
    broker_timeout_s: float = 8.0,
    synced: Callable[[], bool] = host.clock_synced,
) -> list[Check]:
    """Every check, in the order a technician would do them; stops early only without a config."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [Check("config", False, str(exc).splitlines()[0] + " (see check-config)")]
    checks = [
        Check("config", True, f"{config.site}/{config.device}, {len(config.sensors)} sensors")
    ]
    checks += _identity(config)
    checks.append(_broker(config, broker_timeout_s))
    checks += _pins(config, pin_factory)
    checks.append(Check("camera", True, "none configured"))
    checks.append(
        Check("clock", ok := synced(), "synchronised" if ok else "NOT synchronised (NTP?)")
    )
    checks.append(_disk(config.data_dir))
    return checks


def _identity(config: AgentConfig) -> list[Check]:
    tls = config.broker.tls
    if tls is None:
        return [
            Check("certificate", False, "no [broker.tls] in the config: the broker will refuse")
        ]
    try:
        key = load_private_key(config.key_path)
    except IdentityError as exc:
        return [Check("key", False, str(exc))]
    out = [Check("key", True, str(config.key_path))]
    try:
        cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    except (OSError, ValueError) as exc:
        return [*out, Check("certificate", False, f"{tls.cert}: {exc}")]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if cert.public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        return [*out, Check("certificate", False, f"{tls.cert} does not belong to this key")]
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else "?"
    if cn != config.device:
        return [*out, Check("certificate", False, f"certificate is for {cn}")]
    days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    out.append(Check("certificate", days >= 0, f"matches the key, CN={config.device}"))
    out.append(Check("certificate expiry", days >= CERT_WARN_DAYS, f"{days} days left"))
    return out


def _broker(config: AgentConfig, timeout_s: float) -> Check:
    b = config.broker
    result: dict[str, str] = {}
    done = threading.Event()
    try:
        # The client id: the broker uses the certificate's CN anyway.
        client = make_client(b.tls, config.device, field="broker.tls")
    except (OSError, ssl.SSLError, ValueError) as exc:
        return Check("broker", False, f"{b.host}:{b.port}: {exc}")

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result["reason"] = str(reason)
        result["ok"] = "" if reason.is_failure else "yes"
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(b.host, b.port, keepalive=10)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return Check("broker", False, f"{b.host}:{b.port}: {exc}")
    client.loop_start()
    done.wait(timeout_s)
    client.disconnect()
    client.loop_stop()
    how = "mutual TLS" if b.tls else "no TLS"
    if result.get("ok"):
        return Check("broker", True, f"{b.host}:{b.port} accepted us ({how})")
    why = result.get(
        "reason", f"no answer in {timeout_s:g} s (TLS refused or certificate revoked?)"
    )
    return Check("broker", False, f"{b.host}:{b.port}: {why}")


def _pins(config: AgentConfig, pin_factory: Any) -> list[Check]:
    from agent.pins import PinFactoryError, make_pin_factory
    from agent.sensors import SensorBank

    try:
        factory = pin_factory or make_pin_factory(config.pin_factory)
        bank = SensorBank(config.sensors, factory)
    except (PinFactoryError, Exception) as exc:  # gpiozero raises many kinds off a Pi
        return [Check("pins", False, str(exc))]
    try:
        out = []
        words = {
            "door": ("open", "closed"),
            "motion": ("motion", "quiet"),
            "tamper": ("lid open", "lid closed"),
            "patrol": ("pressed", "released"),
        }
        for s in config.sensors:
            active = bank.read(s.name)
            word = words[s.kind][0 if active else 1]
            out.append(Check(f"GPIO{s.pin} {s.name}", True, f"{s.kind}: reads {word}"))
        return out
    finally:
        bank.close()


def _disk(path: Path) -> Check:
    probe = path if path.exists() else path.parent
    try:
        free = shutil.disk_usage(probe).free // (1024 * 1024)
    except OSError as exc:
        return Check("disk", False, f"{path}: {exc}")
    return Check("disk", free >= MIN_FREE_MB, f"{free} MB free at {probe}")


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'PASS' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks]
    failed = sum(not c.ok for c in checks)
    lines.append(f"selftest: {len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)
