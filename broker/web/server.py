"""Run the page with uvicorn on a thread of the collector's process."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import uvicorn

from broker.web.app import AckCallback, create_app
from broker.web.config import WebConfig
from broker.web.evidence_view import EventSource, Evidence
from broker.web.sessions import load_or_create_secret
from broker.web.state import LiveState

log = logging.getLogger("jaga.web")


class WebError(RuntimeError):
    """The page could not start (address in use, unreadable certificate ...)."""


class WebServer:
    """A running page; stop() ends its streams and its thread."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, state: LiveState, scheme: str
    ) -> None:
        self._server = server
        self._thread = thread
        self._state = state
        self.scheme = scheme

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
    evidence: Evidence | None = None,
    events: EventSource | None = None,
    start_timeout: float = 10.0,
) -> WebServer:
    """Start the page on config.bind (port 0: any free port) and return once it listens."""
    secret = load_or_create_secret(config.secret_file or data_dir / "web-session.key")
    app = create_app(state, config, secret=secret, ack=ack, evidence=evidence, events=events)
    tls = config.tls
    for path in (tls.cert, tls.key) if tls else ():
        if not path.is_file():
            raise WebError(f"[web.tls]: {path} does not exist")
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
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
    handle = WebServer(server, thread, state, "https" if tls else "http")
    log.info("guard-post page on %s", handle.url)
    return handle
