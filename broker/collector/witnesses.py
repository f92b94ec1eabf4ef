"""Witnesses' messages (jaga/v1/<site>/witness/<name>): a small path of their own beside the
events, which never waits for or delays them. Builds; writes nothing.

A cosignature becomes a `cosignature` point (broker.cosignatures); a fork report an integrity
alarm (`witness-fork` or `witness-rewind`, critical) and an `integrity` point. Anything else
is logged and dropped. The body must name the site and witness its topic names: the broker's
ACL lets a witness publish only on its own topic, so the topic vouches for who sent it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from broker import points
from broker.cosignatures import cosignature_point
from broker.influx import Record
from protocol import topics
from protocol.cosignature import CosignatureError, parse_cosignature, parse_fork, parse_signed

log = logging.getLogger("jaga.collector")


@dataclass(frozen=True, slots=True)
class WitnessAlarm:
    """A witness refused an event of a unit: what the alert engine's integrity rule takes."""

    site: str | None
    device: str | None
    reason: str
    detail: str
    seq: int | None
    event_id: str | None = None


@dataclass
class WitnessBatch:
    points: list[Record] = field(default_factory=list)
    alarms: list[WitnessAlarm] = field(default_factory=list)
    cosignatures: int = 0
    dropped: int = 0


def take(messages: list[tuple[str, bytes]], received_ns: int) -> WitnessBatch:
    """The points and alarms of witnesses' messages (topic, payload)."""
    out = WitnessBatch()
    for topic, payload in messages:
        try:
            _one(topic, payload, received_ns, out)
        except CosignatureError as exc:
            out.dropped += 1
            log.warning("witness message on %s dropped: %s", topic[:120], exc)
    return out


def _one(topic: str, payload: bytes, received_ns: int, out: WitnessBatch) -> None:
    where = topics.parse_witness_topic(topic)
    if where is None:
        raise CosignatureError("not a witness topic")
    site, name = where
    signed = parse_signed(payload)
    if signed.type == "cosignature":
        c = parse_cosignature(signed.body)
        _same(c.site, c.witness, site, name)
        out.points.append(cosignature_point(c, signed))
        out.cosignatures += 1
        return
    f = parse_fork(signed.body)
    _same(f.site, f.witness, site, name)
    detail = (
        f"witness {f.witness} refused a {f.kind}: at seq {f.seq} it holds {f.seen[:16]}, "
        f"was offered {f.offered[:16]}"
    )
    reason = f"witness-{f.kind}"
    out.alarms.append(WitnessAlarm(f.site, f.device, reason, detail, f.seq))
    out.points.append(
        points.witness_report_point(
            f.site,
            f.device,
            reason,
            detail,
            f.seq,
            f.witness,
            signed.body.decode(),
            signed.sig,
            received_ns,
        )
    )
    log.error("witness %s reports a %s of %s/%s at seq %d", name, f.kind, site, f.device, f.seq)


def _same(site: str, witness: str, topic_site: str, topic_witness: str) -> None:
    if (site, witness) != (topic_site, topic_witness):
        raise CosignatureError(
            f"body names {site}/{witness} but came on the topic of {topic_site}/{topic_witness}"
        )
