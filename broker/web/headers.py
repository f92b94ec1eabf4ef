"""Security headers on every response of the guard-post page, 500s included."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SecurityHeaders:
    """Headers for every response: no framing, no foreign scripts, nothing cached by default;
    over TLS, browsers are told to come back only over TLS (HSTS)."""

    CSP = (
        "default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; media-src 'none'; object-src 'none'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    )
    HSTS = b"max-age=31536000"
    """A year; no includeSubDomains: the collector's name may carry other people's sites."""

    def __init__(self, app: ASGIApp, *, tls: bool) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": self.CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"same-origin",
                    b"cache-control": b"no-store",
                }
                if self.tls:
                    extra[b"strict-transport-security"] = self.HSTS
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class GuardPostApp(Starlette):
    """Starlette with SecurityHeaders outside its error handler, so a 500 carries them too
    (middleware given to Starlette runs inside ServerErrorMiddleware, which answers 500s)."""

    def __init__(self, *, tls: bool, **starlette: Any) -> None:
        self.tls = tls
        super().__init__(**starlette)

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), tls=self.tls)
