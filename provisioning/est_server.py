"""The enrolment endpoint: a small HTTPS server (standard library) in front of EnrolmentAuthority.

A separate app, not a route of the collector's Starlette/uvicorn page: renewal authenticates the
unit by its TLS client certificate, and uvicorn does not hand the verified peer certificate to
the ASGI app; ssl + http.server does (getpeercert). The server certificate is the broker's
(broker/server.crt|.key, from the site CA, SANs = the hosts units dial), so a unit checks it
with the ca.crt its bundle carries. Client certificates are optional at the TLS layer (a unit
enrolling has none) and checked when present against the root (and the issuing CAs, should a
unit send its leaf alone), without their validity times (X509_V_FLAG_NO_CHECK_TIME): an
expired certificate may still renew within the grace period, which EnrolmentAuthority judges.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509

from provisioning.errors import ProvisioningError
from provisioning.est import CERTS_ONLY, DEFAULT_GRACE_DAYS, EnrolmentAuthority, EstRefused
from provisioning.registry import Registry

DEFAULT_PORT = 8443
NO_CHECK_TIME = 0x200000
"""OpenSSL's X509_V_FLAG_NO_CHECK_TIME (not exported by Python's ssl module)."""
MAX_BODY = 16 * 1024
ROUTE = re.compile(r"^/\.well-known/est/(?:(?P<label>[a-z0-9-]{1,48})/)?(?P<op>[a-z]+)$")
log = logging.getLogger(__name__)


def server_context(registry: Registry) -> ssl.SSLContext:
    """TLS with the broker's certificate; client certificates optional, verified by the site CA."""
    cert = registry.broker_dir / "server.crt"
    key = registry.broker_dir / "server.key"
    if not cert.is_file() or not key.is_file():
        raise ProvisioningError(
            f"{cert} is missing: run `jaga-provision broker-config` (it issues the server "
            "certificate the enrolment endpoint shares with the broker)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=registry.ca_cert_path)
    for generation in registry.issuing_generations():
        issuing = registry.issuing_dir(generation) / "ca.crt"
        if issuing.is_file() and not registry.issuing_revoked(generation):
            context.load_verify_locations(cafile=issuing)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= NO_CHECK_TIME
    return context


class EstServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], authority: EnrolmentAuthority, context: ssl.SSLContext
    ) -> None:
        super().__init__(address, _Handler)
        self.authority = authority
        self.context = context

    def get_request(self) -> tuple[ssl.SSLSocket, object]:
        sock, addr = self.socket.accept()
        sock.settimeout(10)
        # the handshake happens in the request's thread, on its first read
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: object, client_address: object) -> None:
        log.info("enrolment connection from %s failed", client_address, exc_info=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def make_server(
    registry: Registry,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    days: int = 365,
    grace_days: int = DEFAULT_GRACE_DAYS,
) -> EstServer:
    """Bind the endpoint (port 0: any free port); serve_forever() runs it."""
    authority = EnrolmentAuthority(registry, days=days, grace_days=grace_days)
    return EstServer((host, port), authority, server_context(registry))


def serve_in_thread(server: EstServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="est", daemon=True)
    thread.start()
    return thread


class _Handler(BaseHTTPRequestHandler):
    server: EstServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        match = ROUTE.match(self.path)
        if match is None or match["op"] != "cacerts":
            self._text(404, "unknown EST operation")
            return
        self._send(200, CERTS_ONLY, self.server.authority.cacerts())

    def do_POST(self) -> None:
        match = ROUTE.match(self.path)
        op = match["op"] if match else None
        label = match["label"] if match else None
        if op not in ("simpleenroll", "simplereenroll") or label is None:
            self._text(404, "POST /.well-known/est/<site>/simpleenroll or simplereenroll")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1  # not a number: answered 400 below
        if not 0 < length <= MAX_BODY:
            self._text(400, f"the CSR must come as a body of 1 to {MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        authority = self.server.authority
        try:
            if op == "simpleenroll":
                done = authority.simpleenroll(label, self._bearer(), body)
            else:
                done = authority.simplereenroll(label, self._client_cert(), body)
        except EstRefused as exc:
            self._text(exc.status, str(exc))
            return
        self._send(200, CERTS_ONLY, done.body)

    def _bearer(self) -> str | None:
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _client_cert(self) -> x509.Certificate | None:
        sock = self.connection
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        return x509.load_der_x509_certificate(der) if der else None

    def _text(self, status: int, message: str) -> None:
        self._send(status, "text/plain; charset=utf-8", (message + "\n").encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if content_type == CERTS_ONLY:
            self.send_header("Content-Transfer-Encoding", "base64")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), format % args)


def serve(
    registry: Registry, host: str, port: int, days: int, grace_days: int = DEFAULT_GRACE_DAYS
) -> None:
    """Run the endpoint until interrupted (jaga-provision enrol-server)."""
    server = make_server(registry, host, port, days=days, grace_days=grace_days)
    try:
        server.serve_forever()
    finally:
        server.server_close()
