"""The guard-post page: login, the live page, its event stream, acknowledgement, evidence.

Every route but the login form and the static files needs a session, and every piece of data
is filtered by the account's sites on the server: a guard's browser is never sent another
site's tiles, alerts, events or pictures, and cannot acknowledge them. Each job has its
module (login, live, acks, evidence_pages; headers for every response); this one wires them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from broker.i18n import DEFAULT_TZ
from broker.web.acks import AckCallback, Acks
from broker.web.alert_page import AlertPage
from broker.web.config import WebConfig
from broker.web.evidence_pages import EvidencePages
from broker.web.evidence_view import EventSource, Evidence
from broker.web.headers import GuardPostApp
from broker.web.live import Live
from broker.web.login import Login
from broker.web.logouts import Logouts
from broker.web.operations import OperateCallback, Operations
from broker.web.passwords import DEFAULT_HASHER
from broker.web.post import GuardPost
from broker.web.state import LiveState
from broker.web.wall import Wall

if TYPE_CHECKING:
    from broker.collector.live_view import LiveView

STATIC = Path(__file__).parent / "static"


def create_app(
    state: LiveState,
    config: WebConfig,
    *,
    secret: bytes,
    ack: AckCallback | None = None,
    operate: OperateCallback | None = None,
    evidence: Evidence | None = None,
    events: EventSource | None = None,
    clock: Callable[[], float] = time.time,
    keepalive_s: float = 15.0,
    logouts: Path | None = None,
    hasher: PasswordHasher = DEFAULT_HASHER,
    live_view: LiveView | None = None,
    zone_of: Callable[[str], str] = lambda site: DEFAULT_TZ,
    ca_fingerprint: str | None = None,
) -> Starlette:
    """The page as an ASGI app; serve() runs it, tests may drive it with a TestClient.

    logouts: the SQLite file that remembers logged-out sessions across restarts; None keeps
    them in memory only (tests).
    ca_fingerprint: the site CA's SHA-256 fingerprint, shown in every page's footer."""
    post = GuardPost(
        state,
        config,
        secret=secret,
        clock=clock,
        logouts=Logouts(logouts),
        zone_of=zone_of,
        ca_fingerprint=ca_fingerprint,
    )
    login = Login(post, hasher)
    live = Live(
        post, keepalive_s=keepalive_s, can_ack=ack is not None, can_operate=operate is not None
    )
    operations = Operations(post, operate)
    acks = Acks(post, ack)
    alert_page = AlertPage(post, can_ack=ack is not None)
    evidence_pages = EvidencePages(post, evidence, events)
    wall = Wall(
        post,
        live_view.relay if live_view else None,
        live_view.cameras if live_view else set,
        live_view.save if live_view else None,
    )
    routes = [
        Route("/", live.page),
        Route("/login", login.login_form, methods=["GET"]),
        Route("/login", login.login, methods=["POST"]),
        Route("/logout", login.logout, methods=["POST"]),
        Route("/language/{lang}", login.switch_language),
        Route("/api/state", live.api_state),
        Route("/stream", live.stream),
        Route("/alerts/{alert_id}", alert_page.page),
        Route("/alerts/{alert_id}/ack", acks.ack, methods=["POST"]),
        Route("/sites/{site}/arming", operations.arming, methods=["POST"]),
        Route("/sites/{site}/bypass", operations.bypass, methods=["POST"]),
        Route("/sites/{site}/unbypass", operations.unbypass, methods=["POST"]),
        Route("/events/{event_id}", evidence_pages.event_page),
        Route("/pictures/{name}", evidence_pages.picture),
        Route("/wall", wall.page),
        Route("/wall/stream", wall.stream),
        Route("/wall/save", wall.save, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = GuardPostApp(routes=routes, tls=config.tls is not None)
    app.state.post = post
    return app
