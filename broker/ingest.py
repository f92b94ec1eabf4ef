"""What the collector makes of one MQTT message: validate, verify, dedupe — no I/O of its own
(broker.signatures checks the signatures, in other processes for big batches)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from broker.chain import ChainBook, Verdict
from broker.signatures import SignatureCheck, SignaturePool, signature_error, verify_inline
from protocol import models, topics
from protocol.models import Event, Heartbeat, Status, WireError
from protocol.signing import PublicKey, canonical_bytes

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


@dataclass(frozen=True, slots=True)
class Unverified:
    """An event that parsed and names a known unit; its signature is still to be checked
    (`checked` is set when that was done on the way, for a seq already held)."""

    topic: str
    payload: bytes
    event: Event
    body: bytes
    """`canonical_bytes(event)`: what the unit signed, and what its chain hash is of."""
    keys: list[PublicKey]
    checked: SignatureCheck | None = None

    def reject(self, reason: Reason, detail: str) -> Rejected:
        e = self.event
        return Rejected(self.topic, reason, detail, self.payload, e.site, e.device, e.seq, e.id)


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
        self,
        messages: Sequence[tuple[str, bytes]],
        verifier: SignaturePool | None = None,
        parsed: Sequence[topics.ParsedTopic | None] | None = None,
    ) -> list[Outcome]:
        """The outcome of each message, as if each were handled in turn.

        In three passes, so that the signatures (the costly part) can be checked together,
        in other processes: parse and classify each message; check the signatures of the
        events among them; then, in the messages' order, dedupe and check each event against
        the chain book. A message's outcome is the one `handle` gives it alone after the ones
        before it: nothing is staged before its turn, and a signature is never skipped except
        for an event the book already holds (the same seq with the same hash).
        """
        return self.finish_batch(self.begin_batch(messages, verifier, parsed))

    def begin_batch(
        self,
        messages: Sequence[tuple[str, bytes]],
        verifier: SignaturePool | None = None,
        parsed: Sequence[topics.ParsedTopic | None] | None = None,
    ) -> Begun:
        """The first two passes of `handle_batch`: parse, and start checking signatures (in
        the pool's workers while the caller goes on). Reads the chain book, stages nothing:
        a batch may begin before the one ahead of it is finished.

        `parsed`: each message's topic already taken apart (`parse_device_topic`; None where
        it failed, and is taken apart again here for the reason)."""
        if parsed is None:
            staged = [self._prepare(topic, payload) for topic, payload in messages]
        else:
            staged = [
                self._prepare(topic, payload, where)
                for (topic, payload), where in zip(messages, parsed, strict=True)
            ]
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

    def _prepare(
        self, topic: str, payload: bytes, where: topics.ParsedTopic | None = None
    ) -> Outcome | Unverified:
        if where is None:
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
        if not keys:
            return Rejected(
                topic,
                Reason.UNKNOWN_UNIT,
                f"no certificate for {site}/{device}",
                payload,
                site,
                device,
                message.seq,
                message.id,
            )
        body = canonical_bytes(message)
        job = Unverified(topic, payload, message, body, keys)
        held = self.chain.held(device, message.seq)
        if held is None:
            return job
        digest = hashlib.sha256(body).hexdigest()  # = event_hash(message), from the same bytes
        if digest == held:
            # A redelivery of what is held: its body verified when it was stored, so it is not
            # verified again. Nothing is staged, stored or marked for it — even if this copy's
            # signature is forged, all it could repeat is what we already hold.
            return Duplicate(site, device, message.seq)
        # Another event at a held seq: a fork if it is genuine, a bad signature if not.
        return replace(job, checked=(digest, signature_error(message.sig, body, keys)))

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
