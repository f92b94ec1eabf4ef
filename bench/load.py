"""Offered load for the ingest benchmarks: real units' signed streams, published as those units.

Each unit publishes through its own `mosquitto_pub -l` (its own certificate, QoS 1, MQTT 5),
so publishing costs the benchmark almost nothing. The feed is paced by what the consumer has
taken: at most `lead` messages are ahead of it, so the broker never holds a large queue for
the consumer — the DESIGN hazard where a big per-client queue collapses the drain — and the
figure is the consumer's own throughput, not the broker's queue behaviour.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.cpu import process_cpu_s
from bench.site import BenchSite, Identity
from protocol import topics

MOSQUITTO_PUB = "mosquitto_pub"
MOSQUITTO_SUB = "mosquitto_sub"
CHUNK = 250
"""Lines written to one unit's publisher at a time."""


def _tls_args(ident: Identity) -> list[str]:
    return ["--cafile", str(ident.ca), "--cert", str(ident.cert), "--key", str(ident.key)]


class UnitPublisher:
    """`mosquitto_pub -l` as one unit: every line written to it becomes one QoS 1 event."""

    def __init__(self, site: BenchSite, device: str, tag: str) -> None:
        topic = topics.DeviceTopics(site.site, device).event
        cmd = [
            MOSQUITTO_PUB,
            "-h",
            "127.0.0.1",
            "-p",
            str(site.port),
            *_tls_args(site.unit(device)),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-i",
            f"bench-{tag}-{device}",
            "-t",
            topic,
            "-l",
        ]
        self.device = device
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def feed(self, lines: Sequence[bytes]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n".join(lines) + b"\n")
        self.proc.stdin.flush()

    def cpu_s(self) -> float:
        """CPU seconds this publisher has used so far."""
        return process_cpu_s(self.proc.pid) or 0.0

    def close(self, timeout: float = 60.0) -> str:
        """End of input: mosquitto_pub sends what it has and exits; returns its stderr."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace").strip()


class SubCounter:
    """`mosquitto_sub` as the operator on the units' event topics, counting what arrives."""

    def __init__(self, site: BenchSite, count: int) -> None:
        cmd = [
            MOSQUITTO_SUB,
            "-h",
            "127.0.0.1",
            "-p",
            str(site.port),
            *_tls_args(site.operator),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-i",
            "bench-reference-sub",
            "-t",
            topics.device_filter(topics.Channel.EVENT, site=site.site),
            "-C",
            str(count),
            "-F",
            "%m",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.count = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 1 << 16)
            if not data:
                return
            now = time.time_ns()
            if self.first_ns is None:
                self.first_ns = now
            self.count += data.count(b"\n")
            self.last_ns = now

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(5)


@dataclass
class Drive:
    """What happened while the feed ran: samples of (seconds since start, consumed)."""

    published: int = 0
    fed: list[int] = field(default_factory=list)
    """Lines fed per unit: each unit sent the first fed[k] events of its stream."""
    started_ns: int = 0
    fed_until_s: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)
    drained_s: float | None = None
    publisher_errors: list[str] = field(default_factory=list)
    feeders_cpu_s: float = 0.0
    """CPU the mosquitto_pub processes used (they are not among the meters' named processes)."""

    def rate(self, warmup_s: float) -> tuple[float | None, float]:
        """Consumed per second from warmup_s to the end of feeding; and that window's length."""
        inside = [(t, n) for t, n in self.samples if warmup_s <= t <= self.fed_until_s]
        if len(inside) < 2:
            return None, 0.0
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return ((n1 - n0) / (t1 - t0) if t1 > t0 else None), t1 - t0

    def rates(self, warmup_s: float, span_s: float = 5.0) -> list[float]:
        """Consumed per second in successive `span_s` spans of the feeding window: spans of a
        few seconds, because the collector stores (and logs) a whole batch at a time."""
        out: list[float] = []
        start: tuple[float, int] | None = None
        for t, n in self.samples:
            if t < warmup_s:
                continue
            if t > self.fed_until_s:
                break
            if start is None:
                start = (t, n)
            elif t - start[0] >= span_s:
                out.append((n - start[1]) / (t - start[0]))
                start = (t, n)
        return out


def drive(
    site: BenchSite,
    streams: Sequence[Sequence[bytes]],
    devices: Sequence[str],
    consumed: Callable[[], int],
    *,
    seconds: float,
    lead: int,
    tag: str,
    drain_timeout: float = 60.0,
) -> Drive:
    """Feed the streams for `seconds` (or until they run out) keeping at most `lead` messages
    ahead of `consumed()`, then wait for the consumer to take everything fed."""
    pubs = [UnitPublisher(site, d, tag) for d in devices]
    time.sleep(0.5)  # TLS handshakes; mosquitto_pub buffers input until connected anyway
    total = sum(len(s) for s in streams)
    result = Drive(fed=[0] * len(streams), started_ns=time.time_ns())
    pos = result.fed
    turn = 0
    start = time.monotonic()
    last_sample = -1.0
    try:
        while True:
            now = time.monotonic() - start
            done = consumed()
            if now - last_sample >= 0.1:
                result.samples.append((now, done))
                last_sample = now
            if now >= seconds or result.published >= total:
                break
            room = done + lead - result.published
            fed = False
            for i in range(len(pubs)):
                if room < CHUNK:
                    break
                k = (turn + i) % len(pubs)
                lines = streams[k][pos[k] : pos[k] + CHUNK]
                if not lines:
                    continue
                pubs[k].feed(lines)
                pos[k] += len(lines)
                result.published += len(lines)
                room -= len(lines)
                fed = True
            turn += 1
            if not fed:
                time.sleep(0.01)
        result.fed_until_s = time.monotonic() - start
    finally:
        result.feeders_cpu_s = sum(pub.cpu_s() for pub in pubs)
        for pub in pubs:
            err = pub.close()
            if err:
                result.publisher_errors.append(f"{pub.device}: {err[:300]}")
    deadline = time.monotonic() + drain_timeout
    while time.monotonic() < deadline:
        done = consumed()
        now = time.monotonic() - start
        result.samples.append((now, done))
        if done >= result.published:
            result.drained_s = now - result.fed_until_s
            break
        time.sleep(0.1)
    return result
