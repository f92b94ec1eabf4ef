"""Acknowledging an alert from the guard-post page: only with this page's form token, from
this server's origin, for an open alert of a site the account may see; the alert engine
decides."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from broker.i18n import N_
from broker.web.login import safe_next
from broker.web.post import GuardPost, Principal, read_form
from broker.web.sessions import csrf_ok

log = logging.getLogger("jaga.web")

AckCallback = Callable[[str, str], bool]
"""ack(alert_id, by) -> True when the alert engine took the acknowledgement."""


class Acks:
    """`POST /alerts/{alert_id}/ack`."""

    def __init__(self, post: GuardPost, ack: AckCallback | None) -> None:
        self.post = post
        self.ack_callback = ack

    async def ack(self, request: Request) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        me = self.post.principal(request)
        if me is None:
            return login_first(self.post, request, wants_json)

        def answer(status: int, text: str) -> Response:
            return _answer(wants_json, status, text, self.post, me, request)

        form = await read_form(request)
        if not from_this_page(me, request, str(form.get("csrf") or "")):
            log.warning(
                "acknowledgement by %s refused: no valid form token (cross-site?)", me.account.who
            )
            return answer(403, N_("This form is not from this page; reload it."))
        alert_id = request.path_params["alert_id"]
        alert = self.post.state.alert(alert_id)
        if alert is None or not me.can_see(alert.site):
            return answer(404, N_("No such open alert."))
        if self.ack_callback is None:
            return answer(503, N_("Acknowledging is not wired on this server."))
        by = me.account.who
        try:
            taken = await run_in_threadpool(self.ack_callback, alert_id, by)
        except TimeoutError:
            log.error("acknowledgement of %s by %s: the alert engine did not answer", alert_id, by)
            return answer(503, N_("The alert engine did not answer; try again."))
        except ValueError as exc:  # the lifecycle's AlertError: closed, unknown ...
            log.warning("acknowledgement of %s by %s refused: %s", alert_id, by, exc)
            return answer(409, str(exc)[:200])
        if not taken:
            return answer(409, N_("The alert engine did not take it."))
        log.info("alert %s (%s/%s) acknowledged by %s", alert_id, alert.site, alert.device, by)
        if wants_json:
            return JSONResponse({"ok": True, "id": alert_id, "by": by})
        # Back where the button was: the post page, or the alert's own page (a phone's link).
        return RedirectResponse(safe_next(str(form.get("next") or "/")), status_code=303)


def _answer(
    wants_json: bool, status: int, text: str, post: GuardPost, me: Principal, request: Request
) -> Response:
    if wants_json:
        return JSONResponse({"error": post.translate(request, me, text)}, status_code=status)
    return post.message(N_("Not acknowledged"), text, status, me, request)


def login_first(post: GuardPost, request: Request, wants_json: bool) -> Response:
    """No one is logged in: a script gets 401, a browser the login page (then back here)."""
    if wants_json:
        return JSONResponse({"error": "log in first"}, status_code=401)
    return post.to_login(request)


def from_this_page(me: Principal, request: Request, token: str) -> bool:
    """A POST carries this session's form token and, when a browser names one, this origin."""
    return csrf_ok(me.session, token) and _same_origin(request)


def _same_origin(request: Request) -> bool:
    """A browser's Origin header, when sent, names this very server."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
