"""An alert's own page, `/alerts/{alert_id}`: where a notification's link leads on a phone.

Behind the login like every page (an expired session goes to the login form and comes back
here); it shows the alarm in the reader's language, the trigger's still, and one button,
"Akui", that acknowledges it as the logged-in person and comes back here to show it done. The
acknowledgement itself is acks.py's (the page's form token, the alert engine decides); every
open guard-post page hears of it through its event stream.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from broker.i18n import N_
from broker.web.page_words import localize_alert
from broker.web.post import GuardPost

ALERT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class AlertPage:
    """`GET /alerts/{alert_id}`."""

    def __init__(self, post: GuardPost, *, can_ack: bool) -> None:
        self.post = post
        self.can_ack = can_ack

    async def page(self, request: Request) -> Response:
        post = self.post
        me = post.principal(request)
        if me is None:
            return post.to_login(request)
        alert_id = request.path_params["alert_id"]
        alert = post.state.alert(alert_id) if ALERT_ID.fullmatch(alert_id) else None
        if alert is None or not me.can_see(alert.site):
            return post.message(
                N_("No open alarm"),
                N_("This alarm is closed already (cleared or resolved), or it is not known here."),
                404,
                me,
                request,
            )
        lang = post.language(request, me)
        tz = post.zone_of(alert.site)
        data = localize_alert(self._alert_dict(alert_id, alert.site), lang, tz)
        pictures = data.get("pictures") or []
        still = next((p for p in pictures if p.get("role") == "still"), None)
        return post.render(
            "alert.html",
            lang=lang,
            me=me,
            alert=data,
            still=still or (pictures[0] if pictures else None),
            can_ack=self.can_ack,
            next_path=request.url.path,
        )

    def _alert_dict(self, alert_id: str, site: str) -> dict[str, Any]:
        """The alert as the post page has it (with its pictures)."""
        snap = self.post.state.snapshot(lambda s: s == site)
        for s in snap["sites"]:
            for a in s["alerts"]:
                if a["id"] == alert_id:
                    return dict(a)
        raise LookupError(alert_id)  # never: state.alert found it a moment ago
