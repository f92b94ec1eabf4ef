"""The live page, its state as JSON, and its event stream: the whole picture first, then each
change as it happens, filtered by the viewer's sites; a session that ends ends the stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from broker.web.config import Role
from broker.web.page_words import localize_alert, localize_site, page_words, zone_name
from broker.web.post import GuardPost
from broker.web.subscriptions import Signal


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


class Live:
    """`/`, `/api/state` and `/stream`."""

    def __init__(
        self, post: GuardPost, *, keepalive_s: float, can_ack: bool, can_operate: bool = False
    ) -> None:
        self.post = post
        self.keepalive_s = keepalive_s
        self.can_ack = can_ack
        self.can_operate = can_operate  # arm, disarm, bypass: for operators (operations.py)

    async def page(self, request: Request) -> Response:
        me = self.post.principal(request)
        if me is None:
            return self.post.to_login(request)
        lang = self.post.language(request, me)
        first = next((s for s in self.post.state.snapshot(me.can_see)["sites"]), None)
        tz = self.post.zone_of(first["site"]) if first else self.post.zone_of("")
        return self.post.render(
            "post.html",
            lang=lang,
            me=me,
            can_ack=self.can_ack,
            can_operate=self.can_operate and me.account.role is Role.OPERATOR,
            words=page_words(lang),
            tz=tz,
            zone=zone_name(tz, time.time_ns()),
            next_path=request.url.path,
        )

    async def api_state(self, request: Request) -> Response:
        me = self.post.principal(request)
        if me is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        return JSONResponse(self._snapshot(me.can_see, self.post.language(request, me)))

    def _snapshot(self, can_see: Callable[[str], bool], lang: str) -> dict[str, Any]:
        """The viewer's sites, in the viewer's language and each site's zone."""
        snap = self.post.state.snapshot(can_see)
        zone_of = self.post.zone_of
        sites = [localize_site(s, lang, zone_of(s["site"]), snap["now"]) for s in snap["sites"]]
        return dict(snap, sites=sites)

    def _update(self, kind: str, data: dict[str, Any], site: str, lang: str) -> dict[str, Any]:
        tz = self.post.zone_of(site)
        if kind == "alert":
            return localize_alert(data, lang, tz)
        if kind == "site":
            return localize_site(data, lang, tz, time.time_ns())
        return data

    async def stream(self, request: Request) -> Response:
        post = self.post
        me = post.principal(request)
        if me is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        sub = post.state.subscribe(asyncio.get_running_loop())
        lang = post.language(request, me)
        expires = me.session.expires(post.sessions.lifetime_s)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n" + sse("snapshot", self._snapshot(me.can_see, lang))
                while True:
                    left = expires - post.clock()
                    if left <= 0 or post.sessions.revoked(me.session.sid):
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
                        yield sse("snapshot", self._snapshot(me.can_see, lang))
                    elif not isinstance(item, Signal) and me.can_see(item.site):
                        data = self._update(item.kind, item.data, item.site, lang)
                        yield sse(item.kind, {**data, "site": item.site})
            finally:
                post.state.unsubscribe(sub)

        return EventStream(
            events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )
