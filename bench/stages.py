"""What one event costs each stage of the collector, in this process, with real signed events —
and what the fixes in use save, measured the same way.

    .venv/bin/python -m bench.stages [--quick]

Stages, per event (µs): JSON -> pydantic; ECDSA verification (with its canonical bytes); the
canonical bytes as json.dumps of the model beside the ones written from the fields (in use);
the chain hash; the whole `Ingest.handle` (topic, parse, key, canonical bytes and hash, verify,
chain book), for new events and for redeliveries (dedupe comes before verification); the
InfluxDB `Point` and its line protocol (influxdb-client) beside the line the collector writes,
`points.event_line` (checked equal to influxdb-client's for every event); the `stored` log
line; the alert engine. Then `Ingest.handle_batch` over collector-sized batches with the
signatures checked in process, and in the collector's `SignaturePool` (as many workers as
the collector starts here): the CPU left on the collector's own process, and the workers'.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.cpu import process_cpu_s, tree_cpu_s
from bench.report import Report, Row, parse_args
from bench.streams import StreamSpec, make_stream
from broker import points
from broker.chain import ChainBook
from broker.collector.service import default_verify_workers
from broker.collector.settle import stored_lines
from broker.ingest import Accepted, Duplicate, Ingest
from broker.signatures import SignaturePool
from protocol import models, topics
from protocol.models import Event
from protocol.signing import PublicKey, canonical_bytes, event_hash, verify
from provisioning.ca import CertificateAuthority
from provisioning.register import add_site
from provisioning.registry import Registry

KEY_STAGES = (
    "Ingest.handle",
    "Point + line",
    "line protocol straight",
    "alert engine",
    "canonical bytes",
)
SITE = "stages"
DEVICE = "stage-01"


@dataclass(frozen=True)
class Sizes:
    events: int
    repeats: int


FULL = Sizes(events=4000, repeats=3)
QUICK = Sizes(events=1000, repeats=2)


class OneKey:
    def __init__(self, key: PublicKey) -> None:
        self.key = key

    def keys(self, site: str, device: str) -> list[PublicKey]:
        return [self.key]


def per_event_us(fn: Callable[[], Any], n: int, repeats: int) -> float:
    """Median over repeats of fn()'s CPU time divided by n, in µs.

    CPU time, not wall time: on a shared machine a stage that waits for a core would look
    slower than it is, and these figures are a budget of CPU per event.
    """
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append((time.process_time() - t) / n * 1e6)
    return round(statistics.median(times), 2)


def pool_costs(
    payloads: list[bytes], key: PublicKey, topic: str, root: Path, workers: int, batch: int = 2000
) -> dict[str, float]:
    """`Ingest.handle_batch` over collector-sized batches, signatures checked in process and
    in the collector's `SignaturePool` of `workers`: CPU µs per event on the collector's
    process each way, CPU µs per event in the pool's workers, and the pool's wall-clock
    rate (which needs free cores: low on a busy shared machine)."""
    chunks = [payloads[i : i + batch] for i in range(0, len(payloads), batch)]

    def run(pool: SignaturePool | None) -> tuple[float, float]:
        chain = ChainBook(root / f"chain-pool-{time.monotonic_ns()}.sqlite3")
        ingest = Ingest(OneKey(key), chain)
        wall, cpu = time.perf_counter(), time.process_time()
        for chunk in chunks:
            out = ingest.handle_batch([(topic, p) for p in chunk], pool)
            assert all(isinstance(o, Accepted) for o in out)
            chain.commit()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        chain.close()
        return wall, cpu

    n = len(payloads)
    _, inline_cpu = run(None)
    pool = SignaturePool(workers, min_batch=1)
    run(pool)  # warm up: workers started, imports done, keys loaded
    before = _children_cpu_s()
    pooled = pool.pooled
    wall, cpu = run(pool)
    pooled = pool.pooled - pooled
    child_s = _children_cpu_s() - before
    pool.close(wait=True)
    return {
        "inline_us": round(inline_cpu / n * 1e6, 2),
        "main_us": round(cpu / n * 1e6, 2),
        "workers_us": round(child_s / max(1, pooled) * 1e6, 2),
        "wall_per_s": round(n / wall),
    }


def _children_cpu_s() -> float:
    """CPU seconds of this process's live children (the pool's workers) so far."""
    me = os.getpid()
    return (tree_cpu_s(me) or 0.0) - (process_cpu_s(me) or 0.0)


def alert_engine(root: Path, events: list[Event], *, armed: bool) -> None:
    """The collector's alert engine over the events, in collector-sized batches."""
    from bench.alerts import alerts_section
    from broker.alerts.config import AlertsConfig
    from broker.alerts.engine import AlertEngine
    from broker.alerts.store import AlertStore

    section = alerts_section(SITE, heartbeat_s=10) if armed else None
    config = AlertsConfig.model_validate(section or {})
    now = time.time_ns()
    engine = AlertEngine(config, AlertStore(root / f"alerts-{now}.sqlite3"), now)
    for i in range(0, len(events), 2000):
        with engine.batch():
            for e in events[i : i + 2000]:
                engine.on_event(e, now)


def make_events(root: Path, n: int) -> tuple[list[bytes], PublicKey, bytes]:
    from bench.provision import enrol_units

    registry = Registry(root / "registry")
    CertificateAuthority.init(registry, "bench stages CA")
    add_site(registry, SITE, name="Stages", timezone="Asia/Jakarta", broker_host="127.0.0.1")
    enrol_units(registry.root, SITE, [DEVICE])
    folder = registry.device_dir(SITE, DEVICE)
    ts0 = time.time_ns() - 60 * 10**9
    payloads = make_stream(StreamSpec(SITE, DEVICE, folder / "device.key", n, ts0_ns=ts0))
    cert = registry.device_certificate(SITE, DEVICE)
    assert cert is not None
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return payloads, key, pem


def main() -> int:
    args = parse_args(__doc__ or "")
    sizes = QUICK if args.quick else FULL
    report = Report("stages", args.quick, dict(sizes.__dict__))
    root = Path(tempfile.mkdtemp(prefix="jaga-stages-"))
    try:
        payloads, key, _pem = make_events(root, sizes.events)
        n, r = len(payloads), sizes.repeats
        topic = topics.DeviceTopics(SITE, DEVICE).event
        events = [models.parse(Event, p) for p in payloads]
        digests = [event_hash(e) for e in events]

        def handle_all() -> None:
            chain = ChainBook(root / f"chain-{time.monotonic_ns()}.sqlite3")
            ingest = Ingest(OneKey(key), chain)
            for i, p in enumerate(payloads):
                out = ingest.handle(topic, p)
                assert isinstance(out, Accepted), out
                if i % 2000 == 1999:
                    chain.commit()
            chain.commit()
            chain.close()

        redelivered = ChainBook(root / "chain-redelivered.sqlite3")
        first = Ingest(OneKey(key), redelivered)
        for p in payloads:
            assert isinstance(first.handle(topic, p), Accepted)
        redelivered.commit()

        def redeliver_all() -> None:
            ingest = Ingest(OneKey(key), redelivered)
            for p in payloads:
                out = ingest.handle(topic, p)
                assert isinstance(out, Duplicate), out

        log = logging.getLogger("bench.stages.stored")
        handler = logging.FileHandler(root / "stored.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

        def log_all() -> None:
            for e in events:
                log.info("stored %s/%s seq=%d %s %s %s", e.site, e.device, e.seq, e.kind,
                         e.sensor, e.state)  # fmt: skip

        def log_batches() -> None:
            for i in range(0, len(events), 200):
                for line in stored_lines(events[i : i + 200]):
                    log.info("%s", line)

        for e, d, p in zip(events, digests, payloads, strict=True):
            assert points.event_line(e, d, p) == points.event_point(e, d, p).to_line_protocol()
        us = {
            "parse (pydantic)": per_event_us(
                lambda: [models.parse(Event, p) for p in payloads], n, r),
            "verify (ECDSA + canonical bytes)": per_event_us(
                lambda: _verify_events(events, key), n, r),
            "canonical bytes: json.dumps of the model": per_event_us(
                lambda: [_long_way(e) for e in events], n, r),
            "canonical bytes written from the fields (protocol.signing, in use)": per_event_us(
                lambda: [canonical_bytes(e) for e in events], n, r),
            "chain hash": per_event_us(lambda: [event_hash(e) for e in events], n, r),
            "Ingest.handle (all of the above + chain book)": per_event_us(handle_all, n, r),
            "Ingest.handle, redelivered (duplicate, not verified again)": per_event_us(
                redeliver_all, n, r),
            "Point + line protocol (influxdb-client)": per_event_us(
                lambda: [
                    points.event_point(e, d, p).to_line_protocol()
                    for e, d, p in zip(events, digests, payloads, strict=True)
                ], n, r),
            "line protocol straight from the event (points.event_line, in use)": per_event_us(
                lambda: [
                    points.event_line(e, d, p)
                    for e, d, p in zip(events, digests, payloads, strict=True)
                ], n, r),
            "'stored' log line per event (file; before #21)": per_event_us(log_all, n, r),
            "'stored' log lines, a unit's events in a batch of 200 a line (in use)": per_event_us(
                log_batches, n, r),
            "alert engine, site disarmed (default config)": per_event_us(
                lambda: alert_engine(root, events, armed=False), n, 1),
            "alert engine, site armed by schedule": per_event_us(
                lambda: alert_engine(root, events, armed=True), n, 1),
        }  # fmt: skip
        handler.close()
        redelivered.close()
        cores = max(1, default_verify_workers())  # as many workers as the collector starts
        inproc_us = per_event_us(lambda: _verify_all(payloads, key), n, r)
        pooled = pool_costs(payloads, key, topic, root, cores)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for what, value in us.items():
        report.row(Row(what, value, "µs/event", key=what.startswith(KEY_STAGES)))
    report.row(Row("parse+verify+hash, in process", inproc_us, "µs/event"))
    report.row(
        Row(
            f"Ingest.handle_batch, signatures in a pool of {cores}: left on the main process",
            pooled["main_us"],
            "µs/event",
            "signatures in process",
            pooled["inline_us"],
            key=True,
        )
    )
    report.row(Row("  ... CPU in the pool's workers", pooled["workers_us"], "µs/event", key=True))
    report.row(Row("  ... wall-clock rate with the pool", float(pooled["wall_per_s"]), "ev/s"))
    report.figure("us_per_event", us)
    report.figure("verify_in_process_us", inproc_us)
    report.figure("verify_pool", pooled)
    report.figure("pool_workers", cores)
    report.note(
        "CPU time per event (not wall time), so the figures hold on a busy machine; the pool's "
        "wall-clock rate needs free cores, which this shared 2-core machine seldom has"
    )
    report.finish()
    return 0


def _long_way(event: Event) -> bytes:
    """canonical_bytes as it was made before #21: json.dumps of the model's dump."""
    data = event.model_dump(mode="json", exclude_none=True)
    data = {k: v for k, v in data.items() if k != "sig"}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _verify_events(events: list[Event], key: PublicKey) -> None:
    for e in events:
        verify(e, key)


def _verify_all(payloads: list[bytes], key: PublicKey) -> None:
    for p in payloads:
        event = models.parse(Event, p)
        verify(event, key)
        event_hash(event)


if __name__ == "__main__":
    raise SystemExit(main())
