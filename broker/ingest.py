"""What the collector makes of one MQTT message: validate, verify, dedupe — no I/O of its own."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from broker.chain import ChainBook, Verdict
from protocol import models, topics
from protocol.models import Event, Heartbeat, Status, WireError
from protocol.signing import PublicKey, SignatureError, event_hash, verify

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


@dataclass
class Ingest:
    """Turns (topic, payload) into an Outcome; chain state is staged in the ChainBook."""

    keys: Keys
    chain: ChainBook
    counts: dict[str, int] = field(default_factory=dict)

    def handle(self, topic: str, payload: bytes) -> Outcome:
        outcome = self._handle(topic, payload)
        key = type(outcome).__name__ if not isinstance(outcome, Rejected) else outcome.reason
        self.counts[key] = self.counts.get(key, 0) + 1
        return outcome

    def _handle(self, topic: str, payload: bytes) -> Outcome:
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
        parsers: dict[topics.Channel, type[Event] | type[Heartbeat] | type[Status]] = {
            topics.Channel.EVENT: Event,
            topics.Channel.HEARTBEAT: Heartbeat,
            topics.Channel.STATUS: Status,
        }
        model = parsers.get(where.channel)
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
        return self._event(topic, payload, message)

    def _event(self, topic: str, payload: bytes, event: Event) -> Outcome:
        site, device = event.site, event.device

        def reject(reason: Reason, detail: str) -> Rejected:
            return Rejected(topic, reason, detail, payload, site, device, event.seq, event.id)

        keys = self.keys.keys(site, device)
        if not keys:
            return reject(Reason.UNKNOWN_UNIT, f"no certificate for {site}/{device}")
        error = ""
        for key in keys:
            try:
                verify(event, key)
                break
            except SignatureError as exc:
                error = str(exc)
        else:
            return reject(Reason.SIGNATURE, error)
        digest = event_hash(event)
        check = self.chain.check(device, event.seq, digest, event.prev)
        if check.verdict is Verdict.DUPLICATE:
            return Duplicate(site, device, event.seq)
        if check.verdict is Verdict.FORK:
            return reject(Reason.FORK, check.detail)
        if check.verdict is Verdict.BROKEN_CHAIN:
            return reject(Reason.CHAIN, check.detail)
        return Accepted(site, device, event, digest)
