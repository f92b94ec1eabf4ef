"""The unit's identity: the key that signs its events and the certificate that vouches for it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agent.outbox import Signer
from protocol.models import Event, EventBody
from protocol.signing import PrivateKey, sign


class IdentityError(Exception):
    """The key or certificate is missing or unusable; the message says which file and why."""


def load_private_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(
            f"signing key {path} does not exist: run `jaga-agent enroll` on this unit, "
            "or install the bundle from `jaga-provision bundle`"
        ) from None
    except OSError as exc:
        raise IdentityError(f"cannot read signing key {path}: {exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise IdentityError(f"{path}: key type {type(key).__name__} is not supported (use P-256)")
    return key


def create_private_key(path: Path) -> PrivateKey:
    """Make a P-256 key readable only by the unit's user."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def make_signer(key: PrivateKey) -> Signer:
    def signer(body: EventBody) -> Event:
        return sign(body, key)

    return signer


def certificate_not_after(path: Path) -> dt.datetime | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc


def days_left(not_after: dt.datetime | None, now: dt.datetime | None = None) -> int | None:
    if not_after is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    return (not_after - now).days
