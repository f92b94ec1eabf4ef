"""Witnesses' cosignatures in InfluxDB: the point the collector stores, and the query an
export makes. The format and its check are protocol.cosignature's (verify_cosignature).

Measurement `cosignature`, tags site, device, witness; fields seq, head, body (the exact
signed text), sig (standard base64 Ed25519), witness_ts (the witness's time, ns); the point's
time is witness_ts. One witness never gives one unit two cosignatures with the same time, so a
redelivered cosignature lands on itself.

The collector stores, it does not vouch: it never checks a witness's signature (it does not
hold witness keys); an auditor checks each body and sig against the witness key whose
fingerprint was published in advance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from influxdb_client import Point, WritePrecision

from broker.influx_reader import InfluxReader, quote_string
from protocol.cosignature import Cosignature, Signed

MEASUREMENT = "cosignature"


def cosignature_point(c: Cosignature, signed: Signed) -> Point:
    ts = c.time_ms * 1_000_000
    return (
        Point(MEASUREMENT)
        .tag("site", c.site)
        .tag("device", c.device)
        .tag("witness", c.witness)
        .field("seq", c.seq)
        .field("head", c.head)
        .field("body", signed.body.decode())
        .field("sig", signed.sig)
        .field("witness_ts", ts)
        .time(ts, WritePrecision.NS)
    )


@dataclass(frozen=True, slots=True)
class StoredCosignature:
    """A cosignature as stored: body and sig are what an auditor checks (with openssl:
    `openssl pkeyutl -verify -pubin -inkey witness.pub -rawin -in body -sigfile sig.bin`)."""

    witness: str
    site: str
    device: str
    seq: int
    head: str
    body: str
    sig: str
    witness_ts: int


def cosignatures(
    reader: InfluxReader, site: str, device: str, first_seq: int, last_seq: int
) -> list[StoredCosignature]:
    """The unit's cosignatures at seqs first_seq..last_seq (all witnesses), by seq then time.

    A cosignature at seq N vouches for the event at N (its `head` is that event's hash,
    protocol.signing.event_hash) and through the chain for every event before it; so an
    export that holds the chain from its event up to N can show it with one whose seq lies
    in the exported range. Pass the range the export's chain covers (to the checkpoint
    after the event). May raise broker.influx_reader.QueryFailed."""
    rows = reader.rows(
        'SELECT "seq", "head", "body", "sig", "witness_ts", "witness" FROM "cosignature" '
        f'WHERE "site" = {quote_string(site)} AND "device" = {quote_string(device)} '
        f'AND "seq" >= {int(first_seq)} AND "seq" <= {int(last_seq)}'
    )
    found = [_stored(r, site, device) for r in rows]
    return sorted(found, key=lambda c: (c.seq, c.witness_ts, c.witness))


def first_beyond(
    reader: InfluxReader, site: str, device: str, after_seq: int
) -> list[StoredCosignature]:
    """Each witness's first cosignature of the unit (by its time) at a seq above after_seq.

    An export carries it beside those of its chain: where the export says its chain ends at
    the newest event stored, a witness that cosigned further shows the tail was cut. May raise
    broker.influx_reader.QueryFailed."""
    rows = reader.rows(
        'SELECT "seq", "head", "body", "sig", "witness_ts" FROM "cosignature" '
        f'WHERE "site" = {quote_string(site)} AND "device" = {quote_string(device)} '
        f'AND "seq" > {int(after_seq)} GROUP BY "witness" ORDER BY time ASC LIMIT 1'
    )
    return sorted((_stored(r, site, device) for r in rows), key=lambda c: c.witness)


def _stored(r: dict[str, Any], site: str, device: str) -> StoredCosignature:
    return StoredCosignature(
        witness=str(r["witness"]),
        site=site,
        device=device,
        seq=int(r["seq"]),
        head=str(r["head"]),
        body=str(r["body"]),
        sig=str(r["sig"]),
        witness_ts=int(r["witness_ts"]),
    )
