"""The live page, its state as JSON, and its event stream: the whole picture first, then each
change as it happens, filtered by the viewer's sites; a session that ends ends the stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

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

    def __init__(self, post: GuardPost, *, keepalive_s: float, can_ack: bool) -> None:
        self.post = post
        self.keepalive_s = keepalive_s
        self.can_ack = can_ack

    async def page(self, request: Request) -> Response:
        me = self.post.principal(request)
        if me is None:
            return self.post.to_login(request)
        return self.post.render("post.html", me=me, can_ack=self.can_ack)

    async def api_state(self, request: Request) -> Response:
        me = self.post.principal(request)
        if me is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        return JSONResponse(self.post.state.snapshot(me.can_see))

    async def stream(self, request: Request) -> Response:
        post = self.post
        me = post.principal(request)
        if me is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        sub = post.state.subscribe(asyncio.get_running_loop())
        expires = me.session.expires(post.sessions.lifetime_s)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n" + sse("snapshot", post.state.snapshot(me.can_see))
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
                        yield sse("snapshot", post.state.snapshot(me.can_see))
                    elif not isinstance(item, Signal) and me.can_see(item.site):
                        yield sse(item.kind, {**item.data, "site": item.site})
            finally:
                post.state.unsubscribe(sub)

        return EventStream(
            events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )
