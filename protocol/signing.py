"""Canonical bytes, signatures and the per-unit hash chain of events."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol.models import Event, EventBody

GENESIS = "0" * 64
"""The `prev` of a unit's very first event."""

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class SignatureError(ValueError):
    """An event whose signature does not verify with the unit's key."""


def canonical_bytes(body: EventBody | dict[str, Any]) -> bytes:
    """Deterministic bytes of an event without its signature: sorted keys, no spaces, UTF-8."""
    data = body.model_dump(mode="json", exclude_none=True) if isinstance(body, EventBody) else body
    data = {k: v for k, v in data.items() if k != "sig" and v is not None}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: EventBody) -> str:
    """Hash that the next event of the unit carries as `prev`.

    It covers the signed body, not the signature: ECDSA signatures are malleable (r, n-s), so
    a hash over them would let anyone turn one valid event into a "different" valid one.
    """
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def sign(body: EventBody, key: PrivateKey) -> Event:
    """Return the signed event for body."""
    data = canonical_bytes(body)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(data)
    else:
        raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
    sig = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return Event(**body.model_dump(), sig=sig)


def verify(event: Event, key: PublicKey) -> None:
    """Raise SignatureError unless event.sig is the key's signature over its canonical bytes."""
    verify_bytes(event.sig, canonical_bytes(event), key)


def verify_bytes(sig: str, data: bytes, key: PublicKey) -> None:
    """`verify` for an event whose canonical bytes the caller already has (and hashes too):
    raise SignatureError unless sig is the key's signature over data."""
    try:
        raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except ValueError:
        raise SignatureError("signature is not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != sig:
        raise SignatureError("signature is not in canonical base64url form")
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(raw, data)
        else:
            key.verify(raw, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("signature does not verify with the unit's certificate") from None
