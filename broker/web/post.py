"""What every handler of the guard-post page shares: the live state, the accounts in force,
the sessions, the clock and the templates; and who is asking (a Principal) or none."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from broker import i18n
from broker.alerts.localized import alert_text
from broker.web.config import Account, WebConfig
from broker.web.logouts import Logouts
from broker.web.sessions import COOKIE, Session, SessionBook, account_key
from broker.web.state import LiveState

LANGUAGE_COOKIE = "jaga_lang"
"""The page's language switch for this browser session (cleared at logout)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: an account from the config in force and the session it logged in with."""

    account: Account
    session: Session

    def can_see(self, site: str) -> bool:
        return self.account.can_see(site)


class GuardPost:
    """The page's shared parts; the handlers (login, live, acks, evidence pages) hold one."""

    def __init__(
        self,
        state: LiveState,
        config: WebConfig,
        *,
        secret: bytes,
        clock: Callable[[], float],
        logouts: Logouts,
        zone_of: Callable[[str], str] = lambda site: i18n.DEFAULT_TZ,
        ca_fingerprint: str | None = None,
    ) -> None:
        self.state = state
        self.zone_of = zone_of  # a site's IANA zone (the alerts config's), for `02:29 WIB`
        self.config = config
        self.clock = clock
        self.sessions = SessionBook(secret, config.session_s, logouts)
        self.secure = config.tls is not None
        loader = PackageLoader("broker.web", "templates")
        self.environments: dict[str, Environment] = {}
        for lang in i18n.LANGUAGES:
            env = i18n.environment(loader, lang)
            env.filters["when"] = _when
            env.globals["alert_text"] = functools.partial(alert_text, lang=lang)
            env.filters["kib"] = lambda n: f"{n / 1024:.1f} KiB" if n else "?"
            # Every page's footer: the anchor auditors pin, read off the screen and published.
            env.globals["ca_fingerprint"] = ca_fingerprint
            self.environments[lang] = env
        self.templates = self.environments[i18n.DEFAULT]

    def language(self, request: Request, me: Principal | None = None) -> i18n.Language:
        """The reader's language: the page's switch (a cookie for this browser session), else
        the account's `language`, else Indonesian."""
        chosen = request.cookies.get(LANGUAGE_COOKIE)
        if chosen in i18n.LANGUAGES:
            return i18n.language(chosen)
        return me.account.language if me is not None else i18n.DEFAULT

    def principal(self, request: Request) -> Principal | None:
        session = self.sessions.read(request.cookies.get(COOKIE), self.clock())
        if session is None:
            return None
        account = self.config.account(session.user)
        if account is None or account_key(account) != session.key:
            return None  # removed, or the password changed since this login
        return Principal(account, session)

    def render(
        self, template: str, status: int = 200, *, lang: str = i18n.DEFAULT, **context: Any
    ) -> HTMLResponse:
        """A template in the reader's language (`lang` from `language()`; see broker.i18n)."""
        env = self.environments[i18n.language(lang)]
        html = env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)

    def message(
        self,
        title: str,
        text: str,
        status: int,
        principal: Principal | None = None,
        request: Request | None = None,
    ) -> HTMLResponse:
        """A short page; title and text are msgids (N_), translated when the catalog has them."""
        lang = (
            self.language(request, principal)
            if request is not None
            else (principal.account.language if principal is not None else i18n.DEFAULT)
        )
        t = i18n.translator(lang)
        return self.render(
            "message.html",
            status,
            lang=lang,
            title=t.gettext(title),
            text=t.gettext(text),
            me=principal,
        )

    def translate(self, request: Request, me: Principal | None, msgid: str) -> str:
        return i18n.translator(self.language(request, me)).gettext(msgid)

    def to_login(self, request: Request) -> RedirectResponse:
        path = request.url.path
        target = "/login" if path == "/" else f"/login?next={quote(path, safe='/')}"
        return RedirectResponse(target, status_code=303)


async def read_form(request: Request) -> FormData:
    """A posted form, small: no files, few fields, short parts."""
    return await request.form(max_files=0, max_fields=20, max_part_size=8192)


def _when(ns: int | None, tz: str = i18n.DEFAULT_TZ) -> str:
    """`2026-12-07 02:29:05 WIB`: in the site's zone, with its name."""
    return i18n.when(ns, tz) if ns else "—"
