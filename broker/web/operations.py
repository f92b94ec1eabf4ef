"""Arming, disarming, bypassing and lifting a bypass from the guard-post page: operators
only, with this page's form token, from this server's origin, for a site the account may
see; the alert engine decides (a two-person zone waits for a second operator, a wrong PIN is
refused) and records the logged-in person."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from broker.alerts.operations import Operation
from broker.i18n import N_
from broker.web.acks import from_this_page, login_first
from broker.web.post import GuardPost, Principal, read_form
from protocol.alerting import ArmingHow

log = logging.getLogger("jaga.web")

OperateCallback = Callable[[Operation], None]
"""operate(op): done on the alert engine's thread; ValueError (AlertError) when refused."""

BYPASS_CHOICES_MIN = (30, 60, 120, 240, 480, 720)
"""The bypass lengths the page offers (the site's bypass_max_min caps them)."""

NAME_THE_SENSOR = N_("Name the sensor as unit/sensor, e.g. gudang-01/pintu.")


def _from_page(me: Principal, **fields: Any) -> Operation:
    """An operation asked on this page: by the logged-in person, through the web."""
    return Operation(by=me.account.who, account=me.account.name, how=ArmingHow.WEB, **fields)


class Operations:
    """`POST /sites/{site}/arming` (arm, disarm), `POST /sites/{site}/bypass` and
    `POST /sites/{site}/unbypass` (lift a bypass)."""

    def __init__(self, post: GuardPost, operate: OperateCallback | None) -> None:
        self.post = post
        self.operate = operate

    async def arming(self, request: Request) -> Response:
        return await self._handle(request, self._arming_op)

    async def bypass(self, request: Request) -> Response:
        return await self._handle(request, self._bypass_op)

    async def unbypass(self, request: Request) -> Response:
        return await self._handle(request, self._unbypass_op)

    @staticmethod
    def _arming_op(site: str, me: Principal, form: dict[str, str]) -> Operation | str:
        action = form.get("action", "")
        if action not in ("arm", "disarm"):
            return N_("Say arm or disarm.")
        return _from_page(
            me,
            action="arm" if action == "arm" else "disarm",
            site=site,
            zone=form.get("zone") or None,
            code=(form.get("code") or None) if action == "disarm" else None,
        )

    @staticmethod
    def _bypass_op(site: str, me: Principal, form: dict[str, str]) -> Operation | str:
        named = _sensor(form)
        reason = form.get("reason", "").strip()
        try:
            minutes = float(form.get("minutes", ""))
        except ValueError:
            minutes = 0
        if named is None:
            return NAME_THE_SENSOR
        if not reason:
            return N_("A bypass needs a reason.")
        if minutes <= 0:
            return N_("Choose how long.")
        return _from_page(
            me,
            action="bypass",
            site=site,
            device=named[0],
            sensor=named[1],
            for_s=minutes * 60,
            reason=reason,
        )

    @staticmethod
    def _unbypass_op(site: str, me: Principal, form: dict[str, str]) -> Operation | str:
        named = _sensor(form)
        if named is None:
            return NAME_THE_SENSOR
        return _from_page(
            me,
            action="unbypass",
            site=site,
            device=named[0],
            sensor=named[1],
        )

    async def _handle(
        self, request: Request, build: Callable[[str, Principal, dict[str, str]], Operation | str]
    ) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        me = self.post.principal(request)
        if me is None:
            return login_first(self.post, request, wants_json)

        def answer(status: int, text: str) -> Response:
            if wants_json:
                error = self.post.translate(request, me, text)
                return JSONResponse({"error": error}, status_code=status)
            return self.post.message(N_("Not done"), text, status, me, request)

        raw = await read_form(request)
        form = {k: str(v) for k, v in raw.items()}
        if not from_this_page(me, request, form.get("csrf", "")):
            log.warning("arming by %s refused: no valid form token (cross-site?)", me.account.who)
            return answer(403, N_("This form is not from this page; reload it."))
        site = request.path_params["site"]
        if not me.can_see(site):
            return answer(404, N_("No such site."))
        if not me.account.can_operate(site):  # it sees the site (above): not an operator
            return answer(403, N_("Only operators arm, disarm and bypass."))
        if self.operate is None:
            return answer(503, N_("Arming is not wired on this server."))
        op = build(site, me, form)
        if isinstance(op, str):
            return answer(400, op)
        try:
            await run_in_threadpool(self.operate, op)
        except TimeoutError:
            log.error("%s of %s by %s: the alert engine did not answer", op.action, site, op.by)
            return answer(503, N_("The alert engine did not answer; try again."))
        except ValueError as exc:  # AlertError: a wrong PIN, one person twice, too long ...
            log.warning("%s of %s by %s refused: %s", op.action, site, op.by, exc)
            return answer(409, str(exc)[:200])
        log.info("%s of %s (zone %s) by %s from the page", op.action, site, op.zone, op.by)
        if wants_json:
            return JSONResponse({"ok": True, "action": op.action, "by": op.by})
        return RedirectResponse("/", status_code=303)


def _sensor(form: dict[str, str]) -> tuple[str, str] | None:
    """The form's `unit/sensor` as (device, sensor); None unless both are named."""
    device, sep, sensor = form.get("sensor", "").strip().partition("/")
    if not sep or not device or not sensor:
        return None
    return device, sensor
