"""Asks: what to request again from a unit (events it sent that never arrived, pictures of
stored events that did not), as signed `resend` commands ready to publish.

Heartbeats say how far each unit got; broker.resend and broker.evidence_gaps decide; this
module only turns their decisions into signed commands. Picture-gap bookkeeping never stops
storage: its failures are logged and the batch goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from broker.chain import ChainBook
from broker.config import CollectorConfig
from broker.evidence_gaps import EvidenceAsk, EvidenceGaps
from broker.refs import UnitRef
from broker.resend import ResendPlanner
from protocol import topics
from protocol.commands import Resend, UnitCommand, load_pem_key, sign_command
from protocol.models import Heartbeat

log = logging.getLogger("jaga.collector")


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class Asks:
    def __init__(self, config: CollectorConfig, chain: ChainBook, gaps: EvidenceGaps) -> None:
        self.chain = chain
        self.gaps = gaps
        self.planner = ResendPlanner()
        self._signer = command_signer(config)
        self.requests = 0

    def on_heartbeats(self, heartbeats: Iterable[Heartbeat], now_ns: int) -> list[Publish]:
        """Resend commands for what each heartbeat shows missing: events, then pictures."""
        out: list[Publish] = []
        for hb in heartbeats:
            gaps = [(g.first, g.last) for g in self.chain.gaps(hb.device)]
            for req in self.planner.on_heartbeat(
                hb.site, hb.device, hb.last_seq, self.chain.last_seq(hb.device), gaps, now_ns
            ):
                log.warning(
                    "%s/%s: seq %d..%d missing; asking the unit to send them again",
                    req.site,
                    req.device,
                    req.first_seq,
                    req.last_seq,
                )
                out += self.resend(req.site, req.device, req.first_seq, req.last_seq)
            for ask in self._evidence_asks(UnitRef(hb.site, hb.device), hb.outbox_depth, now_ns):
                log.warning(
                    "%s/%s seq %d: %d pictures of event %s missing; asking the unit to send "
                    "them again (attempt %d)",
                    ask.site,
                    ask.device,
                    ask.seq,
                    ask.missing,
                    ask.event_id,
                    ask.attempt,
                )
                out += self.resend(ask.site, ask.device, ask.seq, ask.seq)
        return out

    def _evidence_asks(self, unit: UnitRef, outbox_depth: int, now_ns: int) -> list[EvidenceAsk]:
        try:
            return self.gaps.on_heartbeat(unit, outbox_depth, now_ns)
        except Exception:
            log.exception("evidence gap check failed; events are stored regardless")
            return []

    def resend(self, site: str, device: str, first_seq: int, last_seq: int) -> list[Publish]:
        """A signed `resend` to a unit: events first..last again, and their pictures."""
        signed = signed_command(
            self._signer,
            site,
            device,
            "resend",
            lambda by: Resend(by=by, ts=time.time_ns(), first_seq=first_seq, last_seq=last_seq),
        )
        if signed is None:
            return []
        self.requests += 1
        return [Publish(*signed)]


Signer = tuple[ec.EllipticCurvePrivateKey, bytes, str]
"""The collector's key, its certificate (PEM) and its name: what signs unit commands."""


def signed_command(
    signer: Signer | None,
    site: str,
    device: str,
    name: str,
    build: Callable[[str], UnitCommand],
) -> tuple[str, bytes] | None:
    """(topic, payload) of a unit command the collector signs, `build(by)` making it; None,
    logged, without a key (units accept only signed commands)."""
    if signer is None:
        log.error("cannot sign a %s command: no [mqtt.tls] key", name)
        return None
    key, cert_pem, by = signer
    return topics.DeviceTopics(site, device).cmd(name), sign_command(build(by), key, cert_pem)


def command_signer(config: CollectorConfig) -> Signer | None:
    """The collector's own key and certificate: units accept only signed commands."""
    tls = config.mqtt.tls
    if tls is None:
        return None
    try:
        cert_pem = tls.cert.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = load_pem_key(tls.key.read_bytes())
    except (OSError, ValueError) as exc:
        log.error("cannot load the collector's key for signing commands: %s", exc)
        return None
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return key, cert_pem, str(cns[0].value) if cns else ""
