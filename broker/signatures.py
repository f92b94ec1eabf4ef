"""Checking events' signatures: in this process, or in a pool of worker processes (pure work:
the event's canonical bytes, its signature and the unit's public keys in, the chain hash and a
verdict out)."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from protocol.models import Event
from protocol.signing import PublicKey, SignatureError, canonical_bytes, verify_bytes

log = logging.getLogger("jaga.collector.ingest")


SignatureCheck = tuple[str, str | None]
"""What checking one event's signature found: its chain hash (`event_hash`), and why the
signature failed (None: one of the unit's keys signed it)."""


class SignatureJob(Protocol):
    """An event to check: parsed, its canonical bytes, and the unit's keys (ingest.Unverified)."""

    @property
    def event(self) -> Event: ...

    @property
    def body(self) -> bytes:
        """`canonical_bytes(event)`: what the unit signed."""
        ...

    @property
    def keys(self) -> list[PublicKey]: ...


def check_signature(event: Event, keys: Sequence[PublicKey]) -> SignatureCheck:
    """The event's chain hash, and None if one of keys signed it (else why not)."""
    return check_body(canonical_bytes(event), event.sig, keys)


def check_body(body: bytes, sig: str, keys: Sequence[PublicKey]) -> SignatureCheck:
    """`check_signature` of an event whose canonical bytes are `body` and signature `sig`."""
    return hashlib.sha256(body).hexdigest(), signature_error(sig, body, keys)


def signature_error(sig: str, body: bytes, keys: Sequence[PublicKey]) -> str | None:
    """Why none of keys signed body (None: one did)."""
    error = "no key to verify with"
    for key in keys:
        try:
            verify_bytes(sig, body, key)
            return None
        except SignatureError as exc:
            error = str(exc)
    return error


def verify_inline(jobs: Sequence[SignatureJob]) -> list[SignatureCheck]:
    """Check each job's signature here, in this process."""
    return [check_body(j.body, j.event.sig, j.keys) for j in jobs]


class SignaturePool:
    """Checks a batch's signatures in worker processes, while the collector's thread goes on
    (with the batch before) or waits with the GIL released (its MQTT thread reads on).

    Pure work (the canonical bytes, the signature and the unit's public keys in, the hash and
    a verdict out),
    so it changes no guarantee: the chain book, storage and acknowledgements stay on the
    collector's thread, in order. Batches under `min_batch` events are checked in process (a
    lone alarm does not pay the trip); the workers are started at the first big batch; if the
    pool fails in any way the batch is checked in process, and so are all batches for
    `retry_s` before a new pool is tried.
    """

    def __init__(
        self,
        workers: int,
        *,
        min_batch: int = 64,
        timeout_s: float = 10.0,
        retry_s: float = 60.0,
    ) -> None:
        self.workers = max(1, workers)
        self.min_batch = min_batch
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._retry_at = 0.0
        self.pooled = 0
        """Events checked in the workers so far."""
        self.failures = 0
        self._pool: ProcessPoolExecutor | None = None
        self._der: dict[int, tuple[PublicKey, bytes]] = {}

    def __call__(self, jobs: Sequence[SignatureJob]) -> list[SignatureCheck]:
        return self.start(jobs)()

    def start(self, jobs: Sequence[SignatureJob]) -> Callable[[], list[SignatureCheck]]:
        """Begin checking jobs; the returned function waits for the answers (in order)."""
        if len(jobs) < self.min_batch or time.monotonic() < self._retry_at:
            return lambda: verify_inline(jobs)
        ders: dict[int, tuple[bytes, ...]] = {}  # per key list: a unit's, shared by its events
        for j in jobs:
            if id(j.keys) not in ders:
                ders[id(j.keys)] = tuple(self._der_of(k) for k in j.keys)
        work = [(j.body, j.event.sig, ders[id(j.keys)]) for j in jobs]
        size = -(-len(work) // self.workers)
        try:
            if self._pool is None:
                # spawn, not fork: the collector has threads (paho, spool, web) whose locks a
                # forked child would inherit held.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
            futures = [
                self._pool.submit(_check_in_worker, work[i : i + size])
                for i in range(0, len(work), size)
            ]
        except Exception as exc:
            return self._failed(exc, jobs)

        def results() -> list[SignatureCheck]:
            try:
                found = [c for f in futures for c in f.result(timeout=self.timeout_s)]
                if len(found) != len(jobs):
                    raise RuntimeError(f"{len(found)} answers for {len(jobs)} events")
            except Exception as exc:  # a worker died, a timeout, anything: never lose a batch
                return self._failed(exc, jobs)()
            self.pooled += len(found)
            return found

        return results

    def _failed(
        self, exc: Exception, jobs: Sequence[SignatureJob]
    ) -> Callable[[], list[SignatureCheck]]:
        self.failures += 1
        self._retry_at = time.monotonic() + self.retry_s
        log.error(
            "signature pool failed (%r); checking signatures in process for %g s",
            exc,
            self.retry_s,
        )
        self.close()
        return lambda: verify_inline(jobs)

    def _der_of(self, key: PublicKey) -> bytes:
        hit = self._der.get(id(key))
        if hit is None or hit[0] is not key:
            der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            hit = self._der[id(key)] = (key, der)  # the key is kept: its id stays its own
        return hit[1]

    def close(self, *, wait: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)


_WORKER_KEYS: dict[bytes, PublicKey] = {}


def _check_in_worker(work: Sequence[tuple[bytes, str, tuple[bytes, ...]]]) -> list[SignatureCheck]:
    """In a pool worker: hash each event's canonical bytes and check its signature."""
    return [check_body(body, sig, [_worker_key(d) for d in ders]) for body, sig, ders in work]


def _worker_key(der: bytes) -> PublicKey:
    key = _WORKER_KEYS.get(der)
    if key is None:
        loaded = load_der_public_key(der)
        if not isinstance(loaded, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise TypeError(f"not a unit key: {type(loaded).__name__}")
        key = _WORKER_KEYS[der] = loaded
    return key
