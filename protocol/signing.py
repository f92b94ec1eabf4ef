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
    if (type(body) is Event or type(body) is EventBody) and body.checkpoint is None and _FAST:
        fast = _plain_event_bytes(body)
        if fast is not None:
            return fast
    data = body.model_dump(mode="json", exclude_none=True) if isinstance(body, EventBody) else body
    data = {k: v for k, v in data.items() if k != "sig" and v is not None}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_PLAIN_FIELDS = frozenset(
    {"v", "id", "site", "device", "sensor", "kind", "state", "seq", "boot_id", "ts", "mono_ns"}
    | {"clock_synced", "snapshot_sha256", "cause", "checkpoint", "prev"}
)
_FAST = set(EventBody.model_fields) == _PLAIN_FIELDS
"""The fields `_plain_event_bytes` writes are all the body's (a new field turns it off)."""


def _plain_event_bytes(e: EventBody) -> bytes | None:
    """`canonical_bytes` of an event without a checkpoint, written straight from its fields:
    the same bytes as json.dumps makes of its model_dump (tests/unit/test_protocol_signing.py
    checks it), at a fifth of the cost — every event is hashed and verified. None when a text
    would need JSON escaping (the models' patterns allow none): the caller does it the long way.
    """
    texts = [e.id, e.site, e.device, e.sensor, e.state, e.boot_id, e.prev]
    if e.cause is not None:
        texts.append(e.cause)
    if e.snapshot_sha256 is not None:
        texts.extend(e.snapshot_sha256)
    text = "".join(texts)
    if not (text.isascii() and text.isprintable()) or '"' in text or "\\" in text:
        return None
    cause = f'"cause":"{e.cause}",' if e.cause is not None else ""
    snaps = (
        '"snapshot_sha256":[' + ",".join(f'"{h}"' for h in e.snapshot_sha256) + "],"
        if e.snapshot_sha256 is not None
        else ""
    )
    return (
        f'{{"boot_id":"{e.boot_id}",{cause}'
        f'"clock_synced":{"true" if e.clock_synced else "false"},'
        f'"device":"{e.device}","id":"{e.id}","kind":"{e.kind.value}",'
        f'"mono_ns":{int(e.mono_ns)},"prev":"{e.prev}","sensor":"{e.sensor}",'
        f'"seq":{int(e.seq)},"site":"{e.site}",{snaps}"state":"{e.state}",'
        f'"ts":{int(e.ts)},"v":{int(e.v)}}}'
    ).encode()


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
