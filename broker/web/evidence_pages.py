"""An event's evidence page and the pictures it shows, each only to an account that may see
the site the event (or the picture's custody) belongs to."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from broker.i18n import N_
from broker.web import evidence_view
from broker.web.evidence_view import EventSource, Evidence
from broker.web.post import GuardPost

TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
PICTURE = re.compile(r"^([0-9a-f]{64})\.jpg$")


class EvidencePages:
    """`/events/{event_id}` and `/pictures/{name}`."""

    def __init__(
        self, post: GuardPost, evidence: Evidence | None, events: EventSource | None
    ) -> None:
        self.post = post
        self.evidence = evidence
        self.events = events

    async def event_page(self, request: Request) -> Response:
        post = self.post
        me = post.principal(request)
        if me is None:
            return post.to_login(request)
        event_id = request.path_params["event_id"]
        not_found = post.message(
            N_("No such event"), N_("No evidence for this event."), 404, me, request
        )
        if not TOKEN.fullmatch(event_id):
            return not_found
        page = await run_in_threadpool(
            evidence_view.build, event_id, post.state, self.evidence, self.events
        )
        if page is None or not me.can_see(page.site):
            return not_found
        lang = post.language(request, me)
        tz = post.zone_of(page.site)
        return post.render(
            "event.html", lang=lang, me=me, page=page, tz=tz, next_path=request.url.path
        )

    async def picture(self, request: Request) -> Response:
        me = self.post.principal(request)
        if me is None:
            return Response(status_code=401)
        m = PICTURE.fullmatch(request.path_params["name"])
        if m is None or self.evidence is None:
            return Response(status_code=404)
        sha = m.group(1)
        sites = self.post.state.picture_sites(sha)
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
