"""`jaga-witness run`: take each unit's events off the broker, check them, log them, cosign.

One loop, in the order the guarantees need: check a batch against the log → append it (one
durable commit, cosignatures and fork reports included) → publish the cosignatures and fork
reports → acknowledge the batch. A crash before the acknowledgement only brings the same
events again (the kept MQTT session, QoS 1), which the log then holds as seen.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519

from kernel.link import Link, Message
from kernel.mqtt import PahoLink, Session, make_client
from protocol import topics
from protocol.cosignature import Cosignature, ForkReport, Signed, sign
from protocol.models import Event, WireError, parse
from protocol.signing import SignatureError, event_hash, verify
from witness.chains import Conflict, Extends, judge
from witness.config import WitnessConfig
from witness.log import WitnessLog
from witness.units import UnitKeys

log = logging.getLogger("jaga.witness")

BATCH_MAX = 200
CHECKPOINT = "checkpoint"
"""The kind of a unit's signed checkpoint event (issue 16, item 4): cosigned at once."""


@dataclass
class WitnessStats:
    events: int = 0
    duplicates: int = 0
    refused: int = 0
    """Events that do not parse or whose signature no pinned-CA certificate verifies."""
    forks: int = 0
    cosignatures: int = 0
    connected: bool = False


@dataclass
class _Pending:
    """A unit's events since its last cosignature."""

    events: int = 0
    checkpoint: bool = False
    last_mono: float = field(default=-1e18)
    last_ms: int = 0


def paho_link(config: WitnessConfig) -> PahoLink:
    m = config.mqtt
    client = make_client(
        m.tls,
        f"witness:{config.name}",
        field="mqtt.tls",
        manual_ack=True,
        reconnect_delay_s=(1, 30),
    )
    return PahoLink(
        client, Session(m.host, m.port, m.keepalive_s, m.session_expiry_s, m.receive_maximum)
    )


class Witness:
    """The witness's checks and cosignatures over a `kernel.link.Link` (paho or in memory)."""

    def __init__(
        self,
        config: WitnessConfig,
        key: ed25519.Ed25519PrivateKey,
        book: WitnessLog,
        unit_keys: UnitKeys,
        link: Link | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.key = key
        self.book = book
        self.unit_keys = unit_keys
        self.link: Link = link if link is not None else paho_link(config)
        self.clock = clock
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.subscribed = threading.Event()
        self.stats = WitnessStats()
        self.pending: dict[tuple[str, str], _Pending] = {}
        for site, device in book.units():
            last = book.last_cosigned(site, device)
            if book.head(site, device)[0] > (last[0] if last else 0):
                self.pending[(site, device)] = _Pending(events=1, last_ms=last[1] if last else 0)

    def filters(self) -> list[str]:
        return [topics.device_filter(topics.Channel.EVENT, site=s) for s in self.config.sites]

    # the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self.link.start(self)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.turn(self._take(stop))

    def turn(self, batch: list[Message]) -> None:
        """Check, log, publish, acknowledge one batch; cosign what is due."""
        now_ms = self.clock() // 1_000_000
        out: list[Signed] = []
        with self.book.transaction():
            for msg in batch:
                report = self.offer(msg, now_ms)
                if report is not None:
                    out.append(report)
            out += self.cosign_due(now_ms, time.monotonic())
        for signed in out:
            self._publish(signed)
        for msg in batch:
            if msg.qos > 0:
                self.link.ack(msg.mid, msg.qos)

    def offer(self, msg: Message, now_ms: int) -> Signed | None:
        """Check one message; log it when it extends the chain; a signed fork report when it
        conflicts with what the log holds."""
        where = topics.device_topic_of(msg.topic)
        if where is None or where.channel is not topics.Channel.EVENT:
            return None
        if where.site not in self.config.sites:
            return None
        try:
            event = parse(Event, msg.payload)
        except WireError as exc:
            self._refuse(msg.topic, f"not an event: {exc}")
            return None
        if (event.site, event.device) != (where.site, where.device):
            self._refuse(msg.topic, f"event of {event.site}/{event.device} on this topic")
            return None
        if not self._signed(event):
            self._refuse(msg.topic, f"seq {event.seq}: no pinned-CA certificate verifies it")
            return None
        digest = event_hash(event)
        unit = (event.site, event.device)
        verdict = judge(event.seq, digest, event.prev, self.book.around(*unit, event.seq))
        if isinstance(verdict, Extends):
            self.book.add_event(*unit, event.seq, digest, event.prev, now_ms)
            self.stats.events += 1
            pending = self.pending.setdefault(unit, _Pending())
            pending.events += 1
            pending.checkpoint = pending.checkpoint or event.kind.value == CHECKPOINT
            return None
        if not isinstance(verdict, Conflict):
            self.stats.duplicates += 1
            return None
        report = ForkReport(
            self.config.name,
            *unit,
            verdict.kind,
            verdict.seq,
            verdict.seen,
            verdict.offered,
            now_ms,
        )
        signed = sign(report, self.key)
        self.book.add_fork(report, signed)
        self.stats.forks += 1
        log.error(
            "%s refused: %s/%s seq %d holds %s, offered %s (event seq %d); not cosigned",
            verdict.kind,
            *unit,
            verdict.seq,
            verdict.seen[:16],
            verdict.offered[:16],
            event.seq,
        )
        return signed

    def cosign_due(self, now_ms: int, now_mono: float) -> list[Signed]:
        """Cosign each unit's head that is due: at a checkpoint, after cosign_every_events new
        events, or cosign_every_s after its last cosignature."""
        out = []
        for unit, p in self.pending.items():
            if p.events == 0:
                continue
            due = (
                p.checkpoint
                or p.events >= self.config.cosign_every_events
                or now_mono - p.last_mono >= self.config.cosign_every_s
            )
            if not due:
                continue
            seq, head = self.book.head(*unit)
            at = max(now_ms, p.last_ms + 1)  # one unit's cosignatures never share a time
            c = Cosignature(self.config.name, *unit, seq, head, at)
            signed = sign(c, self.key)
            self.book.add_cosignature(c, signed)
            p.events, p.checkpoint, p.last_mono, p.last_ms = 0, False, now_mono, at
            self.stats.cosignatures += 1
            log.info("cosigned %s/%s seq %d head %s", *unit, seq, head[:16])
            out.append(signed)
        return out

    def _signed(self, event: Event) -> bool:
        for key in self.unit_keys.keys(event.site, event.device):
            try:
                verify(event, key)
                return True
            except SignatureError:
                continue
        return False

    def _refuse(self, topic: str, why: str) -> None:
        self.stats.refused += 1
        log.warning("ignored %s: %s", topic[:120], why)

    def _publish(self, signed: Signed) -> None:
        """On the witness's topic of the site its body names (the third line)."""
        site = signed.body.decode().split("\n")[2].removeprefix("site ")
        self.link.publish(topics.witness(site, self.config.name), signed.to_json())

    def _take(self, stop: threading.Event) -> list[Message]:
        try:
            batch = [self.inbox.get(timeout=0.5)]
        except queue.Empty:
            return []
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def close(self) -> None:
        self.link.close()

    # the link's thread -------------------------------------------------------------------

    def on_connected(self, resumed: bool) -> None:
        self.stats.connected = True
        log.info("connected to broker (session %s)", "resumed" if resumed else "new")
        self.link.subscribe(self.filters())
        # Idempotent for the collector (same tags and time): covers a publish lost in a crash.
        reader = WitnessLog(self.book.path)  # a connection of its own: this is paho's thread
        try:
            latest = reader.latest_cosignatures()
        finally:
            reader.close()
        for body, sig in latest:
            self._publish(Signed("cosignature", body.encode(), sig))

    def on_refused(self, reason: str) -> None:
        log.error(
            "the broker refused the witness: %s (check mqtt.tls and the ACL: "
            "jaga-provision identity add witness NAME --site S, then broker-config)",
            reason,
        )

    def on_subscribed(self, failures: list[str]) -> None:
        if failures:
            log.error("subscription refused by the broker: %s", ", ".join(failures))
            return
        log.info("subscribed to %s", ", ".join(self.filters()))
        self.subscribed.set()

    def on_disconnected(self, reason: str) -> None:
        if self.stats.connected:
            log.warning("disconnected from broker: %s; reconnecting", reason)
        self.stats.connected = False

    def on_message(self, msg: Message) -> None:
        self.inbox.put(msg)
