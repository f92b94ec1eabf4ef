"""Test-only InfluxDB 1.8-style ``/api/v2/write`` in front of Debian's InfluxDB 1.6.

``POST /api/v2/write?org=..&bucket=db/rp&precision=ns|us|ms|s`` becomes
``POST <target>/write?db=db&rp=rp&precision=n|u|ms|s`` (a bucket without ``/rp`` leaves
rp out, as 1.8 does); the body and its ``Content-Encoding`` (influxd 1.6 takes gzip) pass
through, and the target's status and body come back unchanged. An unreachable or hung
target gives 503 ``{"code":"unavailable",...}``. ``GET /ping`` and ``GET /health`` ask the
target's ``/ping``; with ``version`` set, ``/ping`` says that version instead of the target's
(an install script that wants 1.8+ then accepts the pair). ``POST /query`` passes through, as
1.8 has it. The ``Authorization`` token is dropped (test InfluxDB has auth off).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

_PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}
_PASS_HEADERS = ("Content-Type", "X-Influxdb-Version", "X-Influxdb-Error", "Retry-After")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    target: str
    timeout_s: float
    version: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- responses ------------------------------------------------------------------
    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204 and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict[str, object]) -> None:
        body = json.dumps(obj).encode()
        self._reply(status, body, {"Content-Type": "application/json; charset=utf-8"})

    def _forward(self, req: urllib.request.Request) -> tuple[int, bytes, dict[str, str]] | None:
        """(status, body, headers) from the target, or None after answering 503."""
        try:
            with urllib.request.urlopen(req, timeout=self.server.timeout_s) as resp:
                status, body, hdrs = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as err:
            status, body, hdrs = err.code, err.read(), err.headers
        except OSError as err:  # refused, reset, timed out
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            message = f"InfluxDB at {self.server.target} unreachable: {reason}"
            self._json(503, {"code": "unavailable", "message": message})
            return None
        headers = {k: hdrs[k] for k in _PASS_HEADERS if hdrs.get(k) is not None}
        return status, body, headers

    # -- request body ---------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # -- routes ---------------------------------------------------------------------
    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        body = self._body()
        if url.path == "/query":
            headers = {"Content-Type": self.headers.get("Content-Type", "")}
            target = f"{self.server.target}/query?{url.query}"
            got = self._forward(urllib.request.Request(target, body, headers, method="POST"))
            if got is not None:
                self._reply(*got)
            return
        if url.path != "/api/v2/write":
            self._json(404, {"code": "not found", "message": f"no route {url.path}"})
            return
        query = urllib.parse.parse_qs(url.query)
        bucket = query.get("bucket", [""])[0]
        precision = query.get("precision", ["ns"])[0]
        if not bucket:
            self._json(400, {"code": "invalid", "message": "bucket is required"})
            return
        if precision not in _PRECISION:
            self._json(400, {"code": "invalid", "message": f"invalid precision {precision!r}"})
            return
        db, _, rp = bucket.partition("/")
        params = {"db": db, "precision": _PRECISION[precision]}
        if rp:
            params["rp"] = rp
        headers = {"Content-Type": self.headers.get("Content-Type", "text/plain")}
        if self.headers.get("Content-Encoding"):
            headers["Content-Encoding"] = self.headers["Content-Encoding"]
        target = f"{self.server.target}/write?{urllib.parse.urlencode(params)}"
        got = self._forward(urllib.request.Request(target, body, headers, method="POST"))
        if got is not None:
            self._reply(*got)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path not in ("/ping", "/health"):
            self._json(404, {"code": "not found", "message": f"no route {path}"})
            return
        got = self._forward(urllib.request.Request(f"{self.server.target}/ping"))
        if got is not None and self.server.version:
            got[2]["X-Influxdb-Version"] = self.server.version
        if got is None or path == "/ping":
            if got is not None:
                self._reply(*got)
            return
        status, body, headers = got
        if status == 204:
            version = headers.get("X-Influxdb-Version", "")
            self._json(
                200,
                {
                    "name": "influxdb",
                    "message": "ready for queries and writes",
                    "status": "pass",
                    "checks": [],
                    "version": version,
                },
            )
        else:
            message = f"ping answered {status}: {body.decode(errors='replace')}"
            self._json(503, {"name": "influxdb", "status": "fail", "message": message})

    do_HEAD = do_GET


class V2WriteForwarder:
    """A threaded HTTP server on a free 127.0.0.1 port forwarding v2 writes to ``target``."""

    def __init__(
        self,
        target: str,
        timeout: float = 10.0,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str | None = None,
    ) -> None:
        """``port=0``: the first start picks a free port; restarts reuse it."""
        self.version = version
        self.target = target.rstrip("/")
        self.timeout = timeout
        self.host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("forwarder was never started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("forwarder is already running")
        server = _Server((self.host, self._port), _Handler)
        self._port = int(server.server_address[1])
        server.target = self.target
        server.timeout_s = self.timeout
        server.version = self.version
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"v2-forwarder-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
