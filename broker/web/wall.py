"""The wall: every camera of the viewer's sites live in one grid, and the save button.

`/wall` is the page; `/wall/stream` is one long response per screen carrying the frames of
all its cameras as MJPEG over HTTP (multipart/x-mixed-replace), each part with its camera and
capture time in headers. One response for the whole wall, read by the page's script, because
a browser opens at most 6 HTTP/1.1 connections to one server: an <img> per tile would stall
past 6 cameras. It stays plain HTTP under the page's cookie, site filter and connection caps
(a WebSocket upgrade would leave the connection guard's protocol), works in every phone and
kiosk browser, and `?camera=<site>/<device>` alone is a stream an <img> or VLC can show.
`POST /wall/save` asks the unit for a real evidence set, its cause the guard's login.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.collector.live import Camera
from broker.web.live import EventStream
from broker.web.post import GuardPost, Principal, read_form
from broker.web.relay import LiveFrame, Relay
from broker.web.sessions import csrf_ok

log = logging.getLogger("jaga.web")

BOUNDARY = "jagaframe"
MAX_CAMERAS = 64
"""Cameras one stream carries at most (the wall is made for 16)."""

Save = Callable[[str, str, str], bool]
"""save(site, device, cause) -> True when the signed snapshot command went out."""


def part(frame: LiveFrame) -> bytes:
    """One frame as a part of the multipart stream."""
    head = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
        f"X-Camera: {frame.site}/{frame.device}\r\nX-Captured-Ns: {frame.captured_ns}\r\n\r\n"
    )
    return head.encode() + frame.jpeg + b"\r\n"


class Wall:
    """`/wall`, `/wall/stream` and `POST /wall/save`."""

    def __init__(
        self,
        post: GuardPost,
        relay: Relay | None,
        cameras: Callable[[], set[Camera]],
        save: Save | None,
        *,
        check_s: float = 15.0,
    ) -> None:
        self.post = post
        self.relay = relay
        self.cameras = cameras
        self.save_callback = save
        self.check_s = check_s

    def cameras_of(self, me: Principal) -> list[Camera]:
        return sorted(c for c in self.cameras() if me.can_see(c[0]))

    async def page(self, request: Request) -> Response:
        me = self.post.principal(request)
        if me is None:
            return self.post.to_login(request)
        return self.post.render(
            "wall.html",
            lang=self.post.language(request, me),
            me=me,
            cameras=self.cameras_of(me),
            live=self.relay is not None,
        )

    async def stream(self, request: Request) -> Response:
        post = self.post
        me = post.principal(request)
        if me is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        if self.relay is None:
            return JSONResponse({"error": "no live view on this server"}, status_code=503)
        mine = set(self.cameras_of(me))
        asked = request.query_params.getlist("camera")
        if asked:
            wanted = {tuple(a.split("/", 1)) for a in asked if a.count("/") == 1}
            chosen = frozenset(c for c in mine if c in wanted)
            if not chosen:  # another site's camera, or none: the same answer as no such camera
                return JSONResponse({"error": "no such camera"}, status_code=404)
        else:
            chosen = frozenset(mine)
        if not chosen:
            return JSONResponse({"error": "no such camera"}, status_code=404)
        if len(chosen) > MAX_CAMERAS:
            chosen = frozenset(sorted(chosen)[:MAX_CAMERAS])
        relay = self.relay
        viewer = relay.open(chosen, asyncio.get_running_loop())
        if viewer is None:
            return JSONResponse({"error": "too many live viewers; try later"}, status_code=503)
        expires = me.session.expires(post.sessions.lifetime_s)

        async def parts() -> AsyncIterator[bytes]:
            try:
                async for frame in relay.frames(viewer, self.check_s):
                    if post.clock() >= expires or post.sessions.revoked(me.session.sid):
                        return
                    if frame is not None:
                        yield part(frame)
            finally:
                relay.close(viewer)

        return EventStream(
            parts(),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def save(self, request: Request) -> Response:
        me = self.post.principal(request)
        if me is None:
            return JSONResponse({"error": "log in first"}, status_code=401)
        form = await read_form(request)
        if not csrf_ok(me.session, str(form.get("csrf") or "")):
            return JSONResponse({"error": "This form is not from this page; reload it."}, 403)
        camera = tuple(str(form.get("camera") or "").split("/", 1))
        if len(camera) != 2 or camera not in set(self.cameras_of(me)):
            return JSONResponse({"error": "no such camera"}, status_code=404)
        if self.save_callback is None:
            return JSONResponse({"error": "saving is not wired on this server"}, 503)
        site, device = camera
        cause = f"guard:{me.account.name}"[:64]
        if not self.save_callback(site, device, cause):
            return JSONResponse({"error": "the command could not be sent; try again"}, 503)
        log.info("evidence asked of %s/%s by %s from the wall", site, device, me.account.who)
        return JSONResponse({"ok": True, "camera": f"{site}/{device}", "cause": cause})
