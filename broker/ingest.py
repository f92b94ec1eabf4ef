"""What the collector makes of one MQTT message: validate, verify, dedupe — no I/O of its own
(the SignaturePool hands the signature checks, pure work, to other processes)."""

from __future__ import annotations

import base64
import hashlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from broker.chain import ChainBook, Verdict
from protocol import models, topics
from protocol.models import Event, Heartbeat, Status, WireError
from protocol.signing import PublicKey, SignatureError, canonical_bytes, verify_bytes

log = logging.getLogger("jaga.collector.ingest")

MAX_PAYLOAD = 256 * 1024


class Reason(StrEnum):
    """Why a message was not stored as what it claims to be; the tag on dead letters."""

    TOPIC = "bad-topic"
    PAYLOAD = "bad-payload"
    MISMATCH = "identity-mismatch"  # payload names another unit than the topic (and the cert)
    UNKNOWN_UNIT = "unknown-unit"
    SIGNATURE = "bad-signature"
    FORK = "replayed-or-forked"
    CHAIN = "broken-chain"
    TIME = "time-out-of-order"  # ts not after the unit's previous event (nor before its next)
    TOO_LARGE = "too-large"
    UNSUPPORTED = "unsupported-channel"
    HASH = "picture-hash-mismatch"
    NOT_VOUCHED = "picture-not-vouched"


INTEGRITY = frozenset(
    {
        Reason.MISMATCH,
        Reason.UNKNOWN_UNIT,
        Reason.SIGNATURE,
        Reason.FORK,
        Reason.CHAIN,
        Reason.TIME,
        Reason.HASH,
        Reason.NOT_VOUCHED,
    }
)


class Keys(Protocol):
    def keys(self, site: str, device: str) -> list[PublicKey]: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message to store: an event (new), a heartbeat or a status."""

    site: str
    device: str
    message: Event | Heartbeat | Status
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An event we already hold (at-least-once delivery): acknowledge and move on."""

    site: str
    device: str
    seq: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """Goes to the dead-letter topic; integrity reasons are also recorded as violations."""

    topic: str
    reason: Reason
    detail: str
    payload: bytes
    site: str | None = None
    device: str | None = None
    seq: int | None = None
    event_id: str | None = None
    size: int | None = None
    """Size of the message as received, when `payload` keeps only its start."""

    @property
    def is_integrity(self) -> bool:
        return self.reason in INTEGRITY

    def dead_letter(self, received_ns: int) -> models.DeadLetter:
        return models.DeadLetter(
            topic=self.topic[:512],
            reason=f"{self.reason.value}: {self.detail}"[:2000],
            received_ts=received_ns,
            payload_b64=base64.b64encode(self.payload[:6000]).decode(),
            payload_len=self.size if self.size is not None else len(self.payload),
        )


Outcome = Accepted | Duplicate | Rejected


SignatureCheck = tuple[str, str | None]
"""What checking one event's signature found: its chain hash (`event_hash`), and why the
signature failed (None: one of the unit's keys signed it)."""


@dataclass(frozen=True, slots=True)
class Unverified:
    """An event that parsed and names a known unit; its signature is still to be checked
    (`checked` is set when that was done on the way, for a seq already held)."""

    topic: str
    payload: bytes
    event: Event
    keys: list[PublicKey]
    checked: SignatureCheck | None = None

    def reject(self, reason: Reason, detail: str) -> Rejected:
        e = self.event
        return Rejected(self.topic, reason, detail, self.payload, e.site, e.device, e.seq, e.id)


def check_signature(event: Event, keys: Sequence[PublicKey]) -> SignatureCheck:
    """The event's chain hash, and None if one of keys signed it (else why not)."""
    body = canonical_bytes(event)
    return hashlib.sha256(body).hexdigest(), _signature_error(event.sig, body, keys)


def _signature_error(sig: str, body: bytes, keys: Sequence[PublicKey]) -> str | None:
    error = "no key to verify with"
    for key in keys:
        try:
            verify_bytes(sig, body, key)
            return None
        except SignatureError as exc:
            error = str(exc)
    return error


def verify_inline(jobs: Sequence[Unverified]) -> list[SignatureCheck]:
    """Check each job's signature here, in this process."""
    return [check_signature(j.event, j.keys) for j in jobs]


class SignaturePool:
    """Checks a batch's signatures in worker processes, while the collector's thread goes on
    (with the batch before) or waits with the GIL released (its MQTT thread reads on).

    Pure work (the payload bytes and the unit's public keys in, the hash and a verdict out),
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

    def __call__(self, jobs: Sequence[Unverified]) -> list[SignatureCheck]:
        return self.start(jobs)()

    def start(self, jobs: Sequence[Unverified]) -> Callable[[], list[SignatureCheck]]:
        """Begin checking jobs; the returned function waits for the answers (in order)."""
        if len(jobs) < self.min_batch or time.monotonic() < self._retry_at:
            return lambda: verify_inline(jobs)
        ders: dict[int, tuple[bytes, ...]] = {}  # per key list: a unit's, shared by its events
        for j in jobs:
            if id(j.keys) not in ders:
                ders[id(j.keys)] = tuple(self._der_of(k) for k in j.keys)
        work = [(j.payload, ders[id(j.keys)]) for j in jobs]
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
        self, exc: Exception, jobs: Sequence[Unverified]
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


def _check_in_worker(work: Sequence[tuple[bytes, tuple[bytes, ...]]]) -> list[SignatureCheck]:
    """In a pool worker: parse each payload again and check its signature."""
    out: list[SignatureCheck] = []
    for payload, ders in work:
        keys = [_worker_key(d) for d in ders]
        try:
            event = models.parse(Event, payload)
        except WireError as exc:  # parsed on the collector's side already: cannot happen
            out.append(("", f"the verifier could not parse it: {exc}"))
            continue
        out.append(check_signature(event, keys))
    return out


def _worker_key(der: bytes) -> PublicKey:
    key = _WORKER_KEYS.get(der)
    if key is None:
        loaded = load_der_public_key(der)
        if not isinstance(loaded, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise TypeError(f"not a unit key: {type(loaded).__name__}")
        key = _WORKER_KEYS[der] = loaded
    return key


@dataclass(frozen=True, slots=True)
class Begun:
    """A batch between `Ingest.begin_batch` and `Ingest.finish_batch`."""

    staged: list[Outcome | Unverified]
    checks: Callable[[], list[SignatureCheck]]
    """Waits for the signature checks of the batch's Unverified (those without `checked`)."""


@dataclass
class Ingest:
    """Turns (topic, payload) into an Outcome; chain state is staged in the ChainBook."""

    keys: Keys
    chain: ChainBook
    counts: dict[str, int] = field(default_factory=dict)

    def handle(self, topic: str, payload: bytes) -> Outcome:
        return self.handle_batch([(topic, payload)])[0]

    def handle_batch(
        self, messages: Sequence[tuple[str, bytes]], verifier: SignaturePool | None = None
    ) -> list[Outcome]:
        """The outcome of each message, as if each were handled in turn.

        In three passes, so that the signatures (the costly part) can be checked together,
        in other processes: parse and classify each message; check the signatures of the
        events among them; then, in the messages' order, dedupe and check each event against
        the chain book. A message's outcome is the one `handle` gives it alone after the ones
        before it: nothing is staged before its turn, and a signature is never skipped except
        for an event the book already holds (the same seq with the same hash).
        """
        return self.finish_batch(self.begin_batch(messages, verifier))

    def begin_batch(
        self, messages: Sequence[tuple[str, bytes]], verifier: SignaturePool | None = None
    ) -> Begun:
        """The first two passes of `handle_batch`: parse, and start checking signatures (in
        the pool's workers while the caller goes on). Reads the chain book, stages nothing:
        a batch may begin before the one ahead of it is finished."""
        staged = [self._prepare(topic, payload) for topic, payload in messages]
        todo = [s for s in staged if isinstance(s, Unverified) and s.checked is None]
        if verifier is not None and todo:
            return Begun(staged, verifier.start(todo))
        return Begun(staged, lambda: verify_inline(todo))

    def finish_batch(self, begun: Begun) -> list[Outcome]:
        """The last pass of `handle_batch`, in the messages' order (after the batches before)."""
        staged = begun.staged
        found = iter(begun.checks() if any(isinstance(s, Unverified) for s in staged) else [])
        outcomes: list[Outcome] = []
        for s in staged:
            if isinstance(s, Unverified):
                outcome = self._settle(s, s.checked if s.checked is not None else next(found))
            else:
                outcome = s
            key = type(outcome).__name__ if not isinstance(outcome, Rejected) else outcome.reason
            self.counts[key] = self.counts.get(key, 0) + 1
            outcomes.append(outcome)
        return outcomes

    def _prepare(self, topic: str, payload: bytes) -> Outcome | Unverified:
        try:
            where = topics.parse_device_topic(topic)
        except topics.TopicError as exc:
            return Rejected(topic, Reason.TOPIC, str(exc), payload)
        if len(payload) > MAX_PAYLOAD:
            return Rejected(
                topic,
                Reason.TOO_LARGE,
                f"{len(payload)} bytes",
                payload[:1024],
                where.site,
                where.device,
                size=len(payload),
            )
        model = _PARSERS.get(where.channel)
        if model is None:
            return Rejected(
                topic,
                Reason.UNSUPPORTED,
                f"channel {where.channel} is not stored",
                payload,
                where.site,
                where.device,
            )
        try:
            message: Event | Heartbeat | Status = models.parse(model, payload)
        except WireError as exc:
            return Rejected(topic, Reason.PAYLOAD, str(exc), payload, where.site, where.device)
        if (message.site, message.device) != (where.site, where.device):
            return Rejected(
                topic,
                Reason.MISMATCH,
                f"payload says {message.site}/{message.device}, topic (and certificate) says "
                f"{where.site}/{where.device}",
                payload,
                where.site,
                where.device,
            )
        if not isinstance(message, Event):
            return Accepted(where.site, where.device, message)
        site, device = message.site, message.device
        keys = self.keys.keys(site, device)
        job = Unverified(topic, payload, message, keys)
        if not keys:
            return job.reject(Reason.UNKNOWN_UNIT, f"no certificate for {site}/{device}")
        held = self.chain.held(device, message.seq)
        if held is None:
            return job
        body = canonical_bytes(message)
        digest = hashlib.sha256(body).hexdigest()  # = event_hash(message), from the same bytes
        if digest == held:
            # A redelivery of what is held: its body verified when it was stored, so it is not
            # verified again. Nothing is staged, stored or marked for it — even if this copy's
            # signature is forged, all it could repeat is what we already hold.
            return Duplicate(site, device, message.seq)
        # Another event at a held seq: a fork if it is genuine, a bad signature if not.
        return replace(job, checked=(digest, _signature_error(message.sig, body, keys)))

    def _settle(self, job: Unverified, checked: SignatureCheck) -> Outcome:
        event = job.event
        site, device = event.site, event.device
        digest, error = checked
        if self.chain.held(device, event.seq) == digest:
            return Duplicate(site, device, event.seq)  # an earlier copy in the same batch
        if error is not None:
            return job.reject(Reason.SIGNATURE, error)
        check = self.chain.check(device, event.seq, digest, event.prev, event.ts)
        if check.verdict is Verdict.DUPLICATE:
            return Duplicate(site, device, event.seq)
        if check.verdict is Verdict.FORK:
            return job.reject(Reason.FORK, check.detail)
        if check.verdict is Verdict.BROKEN_CHAIN:
            return job.reject(Reason.CHAIN, check.detail)
        if check.verdict is Verdict.TIME_ORDER:
            # Stored, it would replace (same time) or pass (earlier time) a stored event.
            return job.reject(Reason.TIME, check.detail)
        return Accepted(site, device, event, digest)


_PARSERS: dict[topics.Channel, type[Event] | type[Heartbeat] | type[Status]] = {
    topics.Channel.EVENT: Event,
    topics.Channel.HEARTBEAT: Heartbeat,
    topics.Channel.STATUS: Status,
}
