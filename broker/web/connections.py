"""Caps on the page's open connections and a deadline for each request, beneath uvicorn.

The page runs in the collector's process, so every connection it holds is a file descriptor
that evidence writes, SQLite and the InfluxDB socket can no longer have. uvicorn (0.55, h11)
cannot bound that by itself:

- a connection that never sends a byte is held for ever: the keep-alive timer starts only
  after a response, and `timeout_keep_alive` is cancelled by the first byte of a request, so
  a head sent one byte at a time is never timed out either;
- `limit_concurrency` answers 503 only once a whole request has arrived; it never refuses
  or closes a silent connection;
- under TLS, asyncio gives a handshake 60 s (uvicorn has no setting for it), and nothing is
  told about a connection until its handshake ends.

So uvicorn is given plain TCP and `guarded_h11()` as its protocol: each accepted socket is
counted at once and closed at once above `max_connections` in all or `per_address` for one
address; the TLS handshake is done here with the same deadline; and a connection that has not
delivered a whole request (handshake, head, body) within `request_timeout_s` of connecting,
or of the first byte of a later request, is closed. Idle keep-alive is uvicorn's own timer.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from broker.web.addresses import address_group

log = logging.getLogger("jaga.web")

WAITING_FOR_CLIENT = (h11.IDLE, h11.SEND_BODY)
"""h11 states in which the request is not yet whole: the client owes us bytes."""


class ConnectionGuard:
    """What the page's connections may take: counted per address, shared by every connection."""

    def __init__(
        self,
        *,
        max_connections: int,
        per_address: int,
        request_timeout_s: float,
        tls: ssl.SSLContext | None = None,
        report_every_s: float = 60.0,
    ) -> None:
        self.max_connections = max_connections
        self.per_address = per_address
        self.request_timeout_s = request_timeout_s
        self.tls = tls
        self.report_every_s = report_every_s
        self.by_address: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0
        self._unreported = 0
        self._reported_at = 0.0

    @property
    def open(self) -> int:
        return sum(self.by_address.values())

    def admit(self, group: str) -> bool:
        """Take a place for a new connection from this address group, if one is free."""
        if self.open >= self.max_connections or self.by_address[group] >= self.per_address:
            self.refused += 1
            self._unreported += 1
            self._report(group)
            return False
        self.by_address[group] += 1
        return True

    def release(self, group: str) -> None:
        self.by_address[group] -= 1
        if self.by_address[group] <= 0:
            del self.by_address[group]

    def _report(self, group: str) -> None:
        now = time.monotonic()
        if now - self._reported_at < self.report_every_s:
            return
        log.warning(
            "guard-post page: %d connection(s) closed on arrival since the last report "
            "(%d open, at most %d in all and %d per address; latest from %s). If these are "
            "real screens, raise [web] max_connections / max_connections_per_address",
            self._unreported,
            self.open,
            self.max_connections,
            self.per_address,
            group,
        )
        self._unreported = 0
        self._reported_at = now


class GuardedConnection(asyncio.Protocol):
    """One accepted socket: counted, TLS-wrapped with a deadline, then handed to uvicorn's h11."""

    def __init__(self, guard: ConnectionGuard, inner: H11Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.loop = inner.loop
        self.group: str | None = None  # set while this connection holds a place
        self.raw: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.handshake: asyncio.Task[None] | None = None
        self.handed_over = False  # inner.connection_made() was called
        self.early: list[bytes] = []  # decrypted before start_tls() returned

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        peer = transport.get_extra_info("peername")
        group = address_group(str(peer[0]) if isinstance(peer, tuple) and peer else "unknown")
        if not self.guard.admit(group):
            transport.abort()  # RST now: no fd kept, nothing read, no TLS work spent
            return
        self.group = group
        self._arm()
        if self.guard.tls is None:
            self._hand_over(transport)
            return
        transport.pause_reading()  # the ClientHello waits for start_tls
        self.handshake = self.loop.create_task(self._start_tls(transport, self.guard.tls))

    async def _start_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        try:
            wrapped = await self.loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.guard.request_timeout_s,
            )
        except OSError:  # refused, reset, timed out (SSLError and TimeoutError are OSErrors)
            self._leave()  # a handshake that fails this way never reaches connection_lost
            return
        except asyncio.CancelledError:  # the server is shutting down
            self._leave()
            raise
        if wrapped is None or wrapped.is_closing():
            self._leave()
            return
        self._hand_over(wrapped)

    def _hand_over(self, transport: asyncio.Transport) -> None:
        self.handed_over = True
        self.inner.connection_made(transport)
        early, self.early = self.early, []
        for data in early:
            self.inner.data_received(data)
        self._check()

    def data_received(self, data: bytes) -> None:
        if not self.handed_over:  # asyncio's TLS reads on right after the handshake
            self.early.append(data)
            return
        self.inner.data_received(data)
        self._check()

    def eof_received(self) -> bool | None:
        if self.handed_over:
            self.inner.eof_received()
        return None  # as uvicorn's: the transport closes its side

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handed_over:
            self.inner.connection_lost(exc)
        self._leave()

    def pause_writing(self) -> None:
        if self.handed_over:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.handed_over:
            self.inner.resume_writing()

    def _check(self) -> None:
        """A request still arriving is on the clock; a whole one stops it until the next."""
        if self.inner.conn.their_state in WAITING_FOR_CLIENT:
            if self.deadline is None and self.group is not None:
                self._arm()
        elif self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _arm(self) -> None:
        self.deadline = self.loop.call_later(self.guard.request_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self.deadline = None
        if self.handed_over and self.inner.conn.their_state not in WAITING_FOR_CLIENT:
            return  # the request became whole meanwhile (pipelined, read by uvicorn itself)
        if self.raw is not None:
            self.guard.timed_out += 1
            self.raw.abort()  # also one still flushing a close to a client that reads nothing

    def _leave(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.group is not None:
            self.guard.release(self.group)
            self.group = None


def guarded_h11(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """The `http=` protocol class for uvicorn.Config: its h11 protocol behind `guard`."""

    class GuardedH11(GuardedConnection):
        def __init__(self, **uvicorn_args: Any) -> None:
            super().__init__(guard, H11Protocol(**uvicorn_args))

    return GuardedH11
