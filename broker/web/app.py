"""The guard-post page: login, the live page, its event stream, acknowledgement, evidence.

Every route but the login form and the static files needs a session, and every piece of data
is filtered by the account's sites on the server: a guard's browser is never sent another
site's tiles, alerts, events or pictures, and cannot acknowledge them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from argon2 import PasswordHasher
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.web import evidence_view
from broker.web.addresses import address_group
from broker.web.config import Account, WebConfig
from broker.web.evidence_view import EventSource, Evidence
from broker.web.logouts import Logouts
from broker.web.passwords import DEFAULT_HASHER, burn_time, verify_password
from broker.web.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    Session,
    SessionBook,
    account_key,
    csrf_ok,
)
from broker.web.state import LiveState, Signal
from broker.web.throttle import LoginThrottle

log = logging.getLogger("jaga.web")

AckCallback = Callable[[str, str], bool]
"""ack(alert_id, by) -> True when the alert engine took the acknowledgement."""

STATIC = Path(__file__).parent / "static"
TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
PICTURE = re.compile(r"^([0-9a-f]{64})\.jpg$")
MAX_PASSWORD = 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: an account from the config in force and the session it logged in with."""

    account: Account
    session: Session

    def can_see(self, site: str) -> bool:
        return self.account.can_see(site)


class SecurityHeaders:
    """Headers for every response: no framing, no foreign scripts, nothing cached by default;
    over TLS, browsers are told to come back only over TLS (HSTS)."""

    CSP = (
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
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


class EventStream(StreamingResponse):
    """Server-sent events that end as soon as the browser goes away, whatever the ASGI version."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            with contextlib.suppress(OSError):
                await self.stream_response(send)
            tg.cancel_scope.cancel()


def sse(kind: str, data: object) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class GuardPost:
    """The page's handlers and what they share."""

    def __init__(
        self,
        state: LiveState,
        config: WebConfig,
        *,
        secret: bytes,
        ack: AckCallback | None,
        evidence: Evidence | None,
        events: EventSource | None,
        clock: Callable[[], float],
        keepalive_s: float,
        logouts: Logouts,
        hasher: PasswordHasher,
    ) -> None:
        self.state = state
        self.config = config
        self.ack_callback = ack
        self.evidence = evidence
        self.events = events
        self.clock = clock
        self.keepalive_s = keepalive_s
        self.sessions = SessionBook(secret, config.session_s, logouts)
        self.throttle = LoginThrottle(config.login_max_failures, config.login_lockout_s)
        self.hasher = hasher
        # Each argon2 check takes the memory written in its hash (64 MiB by default): at most
        # this many run at once, whatever the number of addresses guessing.
        self.password_checks = threading.BoundedSemaphore(config.login_concurrency)
        self.secure = config.tls is not None
        self.templates = Environment(
            loader=PackageLoader("broker.web", "templates"),
            autoescape=select_autoescape(default=True),
        )
        self.templates.filters["when"] = _when
        self.templates.filters["kib"] = lambda n: f"{n / 1024:.1f} KiB" if n else "?"

    # sessions ---------------------------------------------------------------------------

    def principal(self, request: Request) -> Principal | None:
        session = self.sessions.read(request.cookies.get(COOKIE), self.clock())
        if session is None:
            return None
        account = self.config.account(session.user)
        if account is None or account_key(account) != session.key:
            return None  # removed, or the password changed since this login
        return Principal(account, session)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)

    def message(
        self, title: str, text: str, status: int, principal: Principal | None = None
    ) -> HTMLResponse:
        return self.render("message.html", status, title=title, text=text, me=principal)

    def to_login(self, request: Request) -> RedirectResponse:
        path = request.url.path
        target = "/login" if path == "/" else f"/login?next={quote(path, safe='/')}"
        return RedirectResponse(target, status_code=303)

    # login ------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if self.principal(request) is not None:
            return RedirectResponse(_safe_next(request.query_params.get("next")), 303)
        notice = "Your session ended; log in again." if "expired" in request.query_params else ""
        return self.login_page(request.query_params.get("next"), notice=notice)

    def login_page(
        self,
        next_path: str | None,
        *,
        error: str = "",
        notice: str = "",
        status: int = 200,
        name: str = "",
        headers: dict[str, str] | None = None,
    ) -> Response:
        token, cookie = self.sessions.login_token()
        response = self.render(
            "login.html",
            status,
            token=token,
            next=_safe_next(next_path),
            error=error,
            notice=notice,
            name=name,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            cookie,
            max_age=3600,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )
        for k, v in (headers or {}).items():
            response.headers[k] = v
        return response

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        name = str(form.get("name") or "").strip().lower()[:64]
        password = str(form.get("password") or "")[:MAX_PASSWORD]
        next_path = str(form.get("next") or "/")
        if not self.sessions.login_token_ok(
            request.cookies.get(LOGIN_COOKIE), str(form.get("token") or "")
        ):
            return self.login_page(
                next_path, error="The login form expired; please try again.", status=403, name=name
            )
        ip = request.client.host if request.client else "unknown"
        keys = (f"user:{name}", f"ip:{address_group(ip)}")
        now = self.clock()
        wait = self.throttle.retry_after(keys, now)
        if wait > 0:
            log.warning(
                "login refused for %r from %s: paused %.0f s more after wrong passwords",
                name,
                ip,
                wait,
            )
            return self.login_page(
                next_path,
                status=429,
                name=name,
                error=f"Too many wrong passwords. Try again in {int(wait) + 1} s.",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        if not self.password_checks.acquire(blocking=False):
            log.warning(
                "login for %r from %s refused: %d password checks already running",
                name,
                ip,
                self.config.login_concurrency,
            )
            return self.login_page(
                next_path,
                status=503,
                name=name,
                error="The server is busy checking other logins. Try again in a few seconds.",
                headers={"Retry-After": "2"},
            )
        try:
            count = self.throttle.failed(keys, now)  # until the password proves right
            account = self.config.account(name)
            # Released only once the thread is done: anyio's run_sync does not abandon it.
            ok = await run_in_threadpool(self.check_password, account, password)
        finally:
            self.password_checks.release()
        if not ok or account is None:
            log.warning(
                "wrong password for %r from %s (%d within %d s)",
                name,
                ip,
                count,
                self.config.login_lockout_s,
            )
            return self.login_page(
                next_path, error="Wrong name or password.", status=401, name=name
            )
        self.throttle.forgive(keys, now)
        value, _ = self.sessions.issue(account, now)
        log.info("%s (%s) logged in from %s", account.who, account.role.value, ip)
        response = RedirectResponse(_safe_next(next_path), status_code=303)
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(self.config.session_s),
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    def check_password(self, account: Account | None, password: str) -> bool:
        """The slow part of a login, run on a worker thread."""
        if account is None:
            burn_time(password, self.hasher)
            return False
        return verify_password(account.password_hash, password, self.hasher)

    async def logout(self, request: Request) -> Response:
        me = self.principal(request)
        if me is not None:
            form = await _form(request)
            if not csrf_ok(me.session, str(form.get("csrf") or "")):
                return self.message("Not logged out", "The form was not this page's.", 403, me)
            await run_in_threadpool(self.sessions.revoke, me.session, self.clock())
            log.info("%s logged out", me.account.who)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # the live page ----------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        me = self.principal(request)
        if me is None:
            return self.to_login(request)
        return self.render("post.html", me=me, can_ack=self.ack_callback is not None)

    async def api_state(self, request: Request) -> Response:
        me = self.principal(request)
        if me is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        return JSONResponse(self.state.snapshot(me.can_see))

    async def stream(self, request: Request) -> Response:
        me = self.principal(request)
        if me is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        sub = self.state.subscribe(asyncio.get_running_loop())
        expires = me.session.expires(self.sessions.lifetime_s)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n" + sse("snapshot", self.state.snapshot(me.can_see))
                while True:
                    left = expires - self.clock()
                    if left <= 0 or self.sessions.revoked(me.session.sid):
                        yield sse("expired", {})
                        return
                    try:
                        item = await asyncio.wait_for(
                            sub.queue.get(), timeout=min(self.keepalive_s, left)
                        )
                    except TimeoutError:
                        yield sse("tick", {"now": time.time_ns()})
                        continue
                    if item is Signal.CLOSE:
                        return
                    if item is Signal.RESYNC:
                        yield sse("snapshot", self.state.snapshot(me.can_see))
                    elif not isinstance(item, Signal) and me.can_see(item.site):
                        yield sse(item.kind, {**item.data, "site": item.site})
            finally:
                self.state.unsubscribe(sub)

        return EventStream(
            events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    # acknowledging ----------------------------------------------------------------------

    async def ack(self, request: Request) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        me = self.principal(request)
        if me is None:
            if wants_json:
                return JSONResponse({"error": "log in first"}, status_code=401)
            return self.to_login(request)
        form = await _form(request)
        if not csrf_ok(me.session, str(form.get("csrf") or "")) or not _same_origin(request):
            log.warning(
                "acknowledgement by %s refused: no valid form token (cross-site?)", me.account.who
            )
            return _answer(wants_json, 403, "This form is not from this page; reload it.", self, me)
        alert_id = request.path_params["alert_id"]
        alert = self.state.alert(alert_id)
        if alert is None or not me.can_see(alert.site):
            return _answer(wants_json, 404, "No such open alert.", self, me)
        if self.ack_callback is None:
            return _answer(wants_json, 503, "Acknowledging is not wired on this server.", self, me)
        by = me.account.who
        try:
            taken = await run_in_threadpool(self.ack_callback, alert_id, by)
        except TimeoutError:
            log.error("acknowledgement of %s by %s: the alert engine did not answer", alert_id, by)
            return _answer(wants_json, 503, "The alert engine did not answer; try again.", self, me)
        except ValueError as exc:  # the lifecycle's AlertError: closed, unknown ...
            log.warning("acknowledgement of %s by %s refused: %s", alert_id, by, exc)
            return _answer(wants_json, 409, str(exc)[:200], self, me)
        if not taken:
            return _answer(wants_json, 409, "The alert engine did not take it.", self, me)
        log.info("alert %s (%s/%s) acknowledged by %s", alert_id, alert.site, alert.device, by)
        if wants_json:
            return JSONResponse({"ok": True, "id": alert_id, "by": by})
        return RedirectResponse("/", status_code=303)

    # evidence ---------------------------------------------------------------------------

    async def event_page(self, request: Request) -> Response:
        me = self.principal(request)
        if me is None:
            return self.to_login(request)
        event_id = request.path_params["event_id"]
        not_found = self.message("No such event", f"No evidence for event {event_id}.", 404, me)
        if not TOKEN.fullmatch(event_id):
            return not_found
        page = await run_in_threadpool(
            evidence_view.build, event_id, self.state, self.evidence, self.events
        )
        if page is None or not me.can_see(page.site):
            return not_found
        return self.render("event.html", me=me, page=page)

    async def picture(self, request: Request) -> Response:
        me = self.principal(request)
        if me is None:
            return Response(status_code=401)
        m = PICTURE.fullmatch(request.path_params["name"])
        if m is None or self.evidence is None:
            return Response(status_code=404)
        sha = m.group(1)
        sites = self.state.picture_sites(sha)
        if not any(me.can_see(s) for s in sites):
            store = self.evidence
            custody = await run_in_threadpool(lambda: store.custody(sha256=sha))
            sites = {str(c["site"]) for c in custody}
        path = self.evidence.path(sha)
        if not any(me.can_see(s) for s in sites) or not path.is_file():
            return Response(status_code=404)
        # Behind a login: never left in a browser's (or a shared screen's) cache after it.
        return FileResponse(
            path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"}
        )


def _answer(wants_json: bool, status: int, text: str, post: GuardPost, me: Principal) -> Response:
    if wants_json:
        return JSONResponse({"error": text}, status_code=status)
    return post.message("Not acknowledged", text, status, me)


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=20, max_part_size=8192)


def _same_origin(request: Request) -> bool:
    """A browser's Origin header, when sent, names this very server."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def _safe_next(value: str | None) -> str:
    """Only a path on this server: never `//elsewhere` nor a full URL."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if value.startswith("/login"):
        return "/"
    return value


def _when(ns: int | None) -> str:
    if not ns:
        return "—"
    return datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def create_app(
    state: LiveState,
    config: WebConfig,
    *,
    secret: bytes,
    ack: AckCallback | None = None,
    evidence: Evidence | None = None,
    events: EventSource | None = None,
    clock: Callable[[], float] = time.time,
    keepalive_s: float = 15.0,
    logouts: Path | None = None,
    hasher: PasswordHasher = DEFAULT_HASHER,
) -> Starlette:
    """The page as an ASGI app; serve() runs it, tests may drive it with a TestClient.

    logouts: the SQLite file that remembers logged-out sessions across restarts; None keeps
    them in memory only (tests)."""
    post = GuardPost(
        state,
        config,
        secret=secret,
        ack=ack,
        evidence=evidence,
        events=events,
        clock=clock,
        keepalive_s=keepalive_s,
        logouts=Logouts(logouts),
        hasher=hasher,
    )
    routes = [
        Route("/", post.page),
        Route("/login", post.login_form, methods=["GET"]),
        Route("/login", post.login, methods=["POST"]),
        Route("/logout", post.logout, methods=["POST"]),
        Route("/api/state", post.api_state),
        Route("/stream", post.stream),
        Route("/alerts/{alert_id}/ack", post.ack, methods=["POST"]),
        Route("/events/{event_id}", post.event_page),
        Route("/pictures/{name}", post.picture),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = GuardPostApp(routes=routes, tls=config.tls is not None)
    app.state.post = post
    return app
