"""Free loopback TCP ports, so test servers never collide with each other or the host's."""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from collections.abc import Iterator

LOW, HIGH = 20_000, 32_767
"""Below Linux's ephemeral range (32768-60999): a server stopped for a while (a fault test)
gets its port back, because no client connection is ever given one of these."""


def share() -> range:
    """The ports this process hands out: all of LOW..HIGH, or, in a pytest-xdist worker
    (PYTEST_XDIST_WORKER=gwN of PYTEST_XDIST_WORKER_COUNT), that worker's own slice of it, so
    two workers never pick the same port between choosing it and binding it. A child
    process of a worker (a demo, a soak) inherits the variables and so the worker's slice."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        size = (HIGH + 1 - LOW) // int(count)
        start = LOW + (int(worker[2:]) % int(count)) * size
        return range(start, start + size)
    return range(LOW, HIGH + 1)


_lock = threading.Lock()
_cursor: Iterator[int] | None = None
_cursor_share: range | None = None


def _next_candidate() -> int:
    """The share's ports in turn from a random start: a port handed out is not offered again
    until every other one was, so two servers of one test (InfluxDB's HTTP and RPC ports,
    picked before either binds) never get the same port."""
    global _cursor, _cursor_share
    ports = share()
    with _lock:
        if _cursor is None or _cursor_share != ports:
            start = random.randrange(len(ports))
            _cursor = itertools.cycle([*ports[start:], *ports[:start]])
            _cursor_share = ports
        return next(_cursor)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` below the ephemeral range that was free a moment ago."""
    for _ in range(200):
        port = _next_candidate()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range
        sock.bind((host, 0))
        fallback: int = sock.getsockname()[1]
        return fallback
