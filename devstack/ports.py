"""Free loopback TCP ports, so test servers never collide with each other or the host's."""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20_000, 32_767
"""Below Linux's ephemeral range (32768-60999): a server stopped for a while (a fault test)
gets its port back, because no client connection is ever given one of these."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` below the ephemeral range that was free a moment ago."""
    for _ in range(200):
        port = random.randint(LOW, HIGH)
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
