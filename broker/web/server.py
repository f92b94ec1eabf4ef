"""Run the page with uvicorn on a thread of the collector's process."""

from __future__ import annotations

import logging
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from argon2 import PasswordHasher

from broker.i18n import DEFAULT_TZ
from broker.web.acks import AckCallback
from broker.web.app import create_app
from broker.web.config import WebConfig
from broker.web.connections import ConnectionGuard, guarded_h11
from broker.web.evidence_view import EventSource, Evidence
from broker.web.operations import OperateCallback
from broker.web.passwords import DEFAULT_HASHER
from broker.web.sessions import load_or_create_secret
from broker.web.state import LiveState

if TYPE_CHECKING:
    from broker.collector.live_view import LiveView

log = logging.getLogger("jaga.web")


class WebError(RuntimeError):
    """The page could not start (address in use, unreadable certificate ...)."""


class WebServer:
    """A running page; stop() ends its streams and its thread."""

    def __init__(
        self,
        server: uvicorn.Server,
        thread: threading.Thread,
        state: LiveState,
        scheme: str,
        connections: ConnectionGuard,
    ) -> None:
        self._server = server
        self._thread = thread
        self._state = state
        self.scheme = scheme
        self.connections = connections

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", [])
        for srv in servers:
            for sock in srv.sockets:
                return int(sock.getsockname()[1])
        return int(self._server.config.port)

    @property
    def url(self) -> str:
        host = self._server.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._state.close_all()
        self._server.should_exit = True
        self._thread.join(timeout)


def serve(
    state: LiveState,
    config: WebConfig,
    *,
    data_dir: Path,
    ack: AckCallback | None = None,
    operate: OperateCallback | None = None,
    evidence: Evidence | None = None,
    events: EventSource | None = None,
    start_timeout: float = 10.0,
    hasher: PasswordHasher = DEFAULT_HASHER,
    live_view: LiveView | None = None,
    zone_of: Callable[[str], str] = lambda site: DEFAULT_TZ,
    ca_fingerprint: str | None = None,
) -> WebServer:
    """Start the page on config.bind (port 0: any free port) and return once it listens."""
    tls = _tls_context(config)
    secret = load_or_create_secret(config.secret_file or data_dir / "web-session.key")
    logouts = data_dir / "web-logouts.sqlite"
    try:
        app = create_app(
            state,
            config,
            secret=secret,
            ack=ack,
            operate=operate,
            evidence=evidence,
            events=events,
            logouts=logouts,
            hasher=hasher,
            live_view=live_view,
            zone_of=zone_of,
            ca_fingerprint=ca_fingerprint,
        )
    except sqlite3.Error as exc:
        raise WebError(f"{logouts}: {exc} (the collector's data_dir must be writable)") from None
    guard = ConnectionGuard(
        max_connections=config.max_connections,
        per_address=config.max_connections_per_address,
        request_timeout_s=config.request_timeout_s,
        tls=tls,
    )
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=guarded_h11(guard),  # counts, TLS and request deadlines: see broker.web.connections
        timeout_keep_alive=5,  # an idle browser connection between requests
        # Also how many sockets asyncio accepts per turn of the loop, before the guard can close
        # them: the page's descriptors stay under max_connections + a few times this.
        backlog=32,
        log_config=None,  # the collector's logging stays as it is
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(uv_config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # SystemExit from uvicorn when it cannot bind
            failure.append(exc)

    thread = threading.Thread(target=run, name="guard-post-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            why = repr(failure[0]) if failure else "see the log above"
            raise WebError(f"the guard-post page could not listen on {config.bind} ({why})")
        time.sleep(0.02)
    handle = WebServer(server, thread, state, "https" if config.tls else "http", guard)
    log.info("guard-post page on %s", handle.url)
    return handle


def _tls_context(config: WebConfig) -> ssl.SSLContext | None:
    """The server side of [web.tls], loaded now so that a bad file is named before listening."""
    tls = config.tls
    if tls is None:
        return None
    for path in (tls.cert, tls.key):
        if not path.is_file():
            raise WebError(f"[web.tls]: {path} does not exist")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise WebError(
            f"[web.tls]: cannot use {tls.cert} with {tls.key} ({exc}); give the PEM "
            "certificate and its own private key, readable by the collector"
        ) from None
    return context
