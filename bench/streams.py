"""Signed, hash-chained event streams of real units, made ahead of a run so that making them
costs nothing while the collector is measured.

The first event of each stream is made by the product's own path (`protocol.signing.sign`,
pydantic models) and the fast path below must give the same payload for it, so the streams
are exactly what the agent would send; the rest reuse one canonical encoding per event for
both the signature and the chain hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agent.identity import load_private_key
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, canonical_bytes, event_hash, sign

BOOT_ID = "bench-boot"
STATES = ("open", "closed")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One unit's stream: who, with which key, how many events from which seq and time."""

    site: str
    device: str
    key_path: Path
    count: int
    sensor: str = "pintu"
    first_seq: int = 1
    prev: str = GENESIS
    ts0_ns: int = 0


def _body(spec: StreamSpec, i: int, prev: str) -> dict[str, object]:
    return {
        "v": 1,
        "id": uuid.uuid4().hex,
        "site": spec.site,
        "device": spec.device,
        "sensor": spec.sensor,
        "kind": "door",
        "state": STATES[i % 2],
        "seq": spec.first_seq + i,
        "boot_id": BOOT_ID,
        # 1 us apart: strictly increasing per unit, as the outbox makes them.
        "ts": spec.ts0_ns + i * 1000,
        "mono_ns": 10**12 + i * 1000,
        "clock_synced": True,
        "prev": prev,
    }


def make_stream(spec: StreamSpec) -> list[bytes]:
    """The unit's events as MQTT payloads, in seq order."""
    key = load_private_key(spec.key_path)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    algo = ec.ECDSA(hashes.SHA256())
    out: list[bytes] = []
    prev = spec.prev
    for i in range(spec.count):
        body = _body(spec, i, prev)
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        sig = base64.urlsafe_b64encode(key.sign(data, algo)).rstrip(b"=").decode()
        payload = json.dumps({**body, "sig": sig}, separators=(",", ":")).encode()
        digest = hashlib.sha256(data).hexdigest()
        if i == 0:
            _check_against_product(body, payload, digest, key)
        out.append(payload)
        prev = digest
    return out


def _check_against_product(
    body: dict[str, object], payload: bytes, digest: str, key: ec.EllipticCurvePrivateKey
) -> None:
    """The fast path must agree with protocol.signing on canonical bytes and chain hash."""
    model = EventBody.model_validate({**body, "kind": Kind(str(body["kind"]))})
    assert (
        canonical_bytes(model)
        == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ), "canonical bytes differ from protocol.signing"
    event = Event.model_validate_json(payload)
    assert event_hash(event) == digest, "chain hash differs from protocol.signing"
    assert sign(model, key).model_dump(exclude={"sig"}) == event.model_dump(exclude={"sig"})


def make_streams(specs: Sequence[StreamSpec], workers: int = 2) -> list[list[bytes]]:
    """All streams, made in parallel processes (one unit's chain stays in one process)."""
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        streams = list(pool.map(make_stream, specs))
    total = sum(len(s) for s in streams)
    print(f"  made {total:,} signed events in {time.monotonic() - started:.1f} s", flush=True)
    return streams
