"""Logging in and out of the guard-post page: a form token, wrong passwords paused per name and
per address, at most `login_concurrency` password checks at once, logouts that last."""

from __future__ import annotations

import logging
import threading

from argon2 import PasswordHasher
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from broker import i18n
from broker.i18n import N_
from broker.web.addresses import address_group
from broker.web.config import Account
from broker.web.passwords import burn_time, verify_password
from broker.web.post import LANGUAGE_COOKIE, GuardPost, read_form
from broker.web.sessions import COOKIE, LOGIN_COOKIE, csrf_ok
from broker.web.throttle import LoginThrottle

log = logging.getLogger("jaga.web")

MAX_PASSWORD = 1024


class Login:
    """The login form, its answer, and logging out."""

    def __init__(self, post: GuardPost, hasher: PasswordHasher) -> None:
        self.post = post
        config = post.config
        self.throttle = LoginThrottle(config.login_max_failures, config.login_lockout_s)
        self.hasher = hasher
        # Each argon2 check takes the memory written in its hash (64 MiB by default): at most
        # this many run at once, whatever the number of addresses guessing.
        self.password_checks = threading.BoundedSemaphore(config.login_concurrency)

    async def login_form(self, request: Request) -> Response:
        if self.post.principal(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        notice = (
            N_("Your session ended; log in again.") if "expired" in request.query_params else ""
        )
        return self.login_page(
            request.query_params.get("next"), notice=notice, lang=self.post.language(request)
        )

    def login_page(
        self,
        next_path: str | None,
        *,
        error: str = "",
        notice: str = "",
        status: int = 200,
        name: str = "",
        headers: dict[str, str] | None = None,
        lang: str = i18n.DEFAULT,
        wait_s: int = 0,
    ) -> Response:
        """error and notice are msgids (N_), translated by the template; wait_s fills %(s)s."""
        token, cookie = self.post.sessions.login_token()
        response = self.post.render(
            "login.html",
            status,
            lang=lang,
            wait_s=wait_s,
            token=token,
            next=safe_next(next_path),
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
            secure=self.post.secure,
        )
        for k, v in (headers or {}).items():
            response.headers[k] = v
        return response

    async def login(self, request: Request) -> Response:
        post = self.post
        form = await read_form(request)
        name = str(form.get("name") or "").strip().lower()[:64]
        password = str(form.get("password") or "")[:MAX_PASSWORD]
        next_path = str(form.get("next") or "/")
        if not post.sessions.login_token_ok(
            request.cookies.get(LOGIN_COOKIE), str(form.get("token") or "")
        ):
            return self.login_page(
                next_path,
                error=N_("The login form expired; please try again."),
                status=403,
                name=name,
                lang=self.post.language(request),
            )
        ip = request.client.host if request.client else "unknown"
        keys = (f"user:{name}", f"ip:{address_group(ip)}")
        now = post.clock()
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
                error=N_("Too many wrong passwords. Try again in %(s)s s."),
                wait_s=int(wait) + 1,
                lang=self.post.language(request),
                headers={"Retry-After": str(int(wait) + 1)},
            )
        if not self.password_checks.acquire(blocking=False):
            log.warning(
                "login for %r from %s refused: %d password checks already running",
                name,
                ip,
                post.config.login_concurrency,
            )
            return self.login_page(
                next_path,
                status=503,
                name=name,
                error=N_("The server is busy checking other logins. Try again in a few seconds."),
                lang=self.post.language(request),
                headers={"Retry-After": "2"},
            )
        try:
            count = self.throttle.failed(keys, now)  # until the password proves right
            account = post.config.account(name)
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
                post.config.login_lockout_s,
            )
            return self.login_page(
                next_path,
                error=N_("Wrong name or password."),
                status=401,
                name=name,
                lang=self.post.language(request),
            )
        self.throttle.forgive(keys, now)
        value, _ = post.sessions.issue(account, now)
        log.info("%s (%s) logged in from %s", account.who, account.role.value, ip)
        response = RedirectResponse(safe_next(next_path), status_code=303)
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(post.config.session_s),
            path="/",
            httponly=True,
            samesite="lax",
            secure=post.secure,
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
        me = self.post.principal(request)
        if me is not None:
            form = await read_form(request)
            if not csrf_ok(me.session, str(form.get("csrf") or "")):
                return self.post.message(
                    N_("Not logged out"), N_("The form was not this page's."), 403, me, request
                )
            await run_in_threadpool(self.post.sessions.revoke, me.session, self.post.clock())
            log.info("%s logged out", me.account.who)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        response.delete_cookie(LANGUAGE_COOKIE, path="/")  # the next guard: their own language
        return response

    async def switch_language(self, request: Request) -> Response:
        """`/language/<id|en>?next=/...`: the page in that language for this browser session."""
        lang = request.path_params["lang"]
        response = RedirectResponse(safe_next(request.query_params.get("next")), 303)
        if lang in i18n.LANGUAGES:
            response.set_cookie(
                LANGUAGE_COOKIE,
                lang,
                path="/",
                httponly=True,
                samesite="lax",
                secure=self.post.secure,
            )
        return response


def safe_next(value: str | None) -> str:
    """Only a path on this server: never `//elsewhere` nor a full URL."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if value.startswith("/login"):
        return "/"
    return value
