"""Login sessions: a signed, expiring cookie per login, bound to the account's current password.

The cookie carries {user, sid, csrf token, issued-at, account key} signed with itsdangerous.
It is checked on every request against the config in force: a removed account, a changed
password (its account key changes) or an expired lifetime ends the session; logging out
revokes the sid until it would have expired anyway, on disk (broker.web.logouts) so that a
restart does not bring it back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from broker.web.config import Account
from broker.web.logouts import Logouts
from kernel.files import Durability, atomic_write

COOKIE = "jaga_session"
LOGIN_COOKIE = "jaga_login"
"""Holds the login form's token before anyone is logged in (double-submit)."""


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    sid: str
    csrf: str
    issued: float
    key: str

    def expires(self, lifetime_s: float) -> float:
        return self.issued + lifetime_s


def account_key(account: Account) -> str:
    """Changes when the password (hash) changes, which ends that account's sessions."""
    return hashlib.sha256(account.password_hash.encode()).hexdigest()[:16]


class SessionBook:
    """Issues and checks session cookies; `now` (seconds) is passed in."""

    def __init__(self, secret: bytes, lifetime_s: float, logouts: Logouts | None = None) -> None:
        self.lifetime_s = lifetime_s
        self._signer = URLSafeSerializer(secret, salt="jaga-web-session")
        self._login_signer = URLSafeSerializer(secret, salt="jaga-web-login")
        self._revoked = Logouts() if logouts is None else logouts

    def issue(self, account: Account, now: float) -> tuple[str, Session]:
        session = Session(
            user=account.name,
            sid=secrets.token_urlsafe(16),
            csrf=secrets.token_urlsafe(24),
            issued=now,
            key=account_key(account),
        )
        value = self._signer.dumps(
            {"u": session.user, "s": session.sid, "c": session.csrf, "i": now, "k": session.key}
        )
        return value, session

    def read(self, cookie: str | None, now: float) -> Session | None:
        """The session in a cookie if it is genuine, current and not logged out."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            raw = self._signer.loads(cookie)
            session = Session(
                user=str(raw["u"]),
                sid=str(raw["s"]),
                csrf=str(raw["c"]),
                issued=float(raw["i"]),
                key=str(raw["k"]),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if not session.issued <= now + 60 or now >= session.expires(self.lifetime_s):
            return None
        if session.sid in self._revoked:
            return None
        return session

    def revoked(self, sid: str) -> bool:
        return sid in self._revoked

    def revoke(self, session: Session, now: float) -> None:
        self._revoked.add(session.sid, session.expires(self.lifetime_s), now)

    def login_token(self) -> tuple[str, str]:
        """A token for the login form and the signed cookie that vouches for it."""
        token = secrets.token_urlsafe(24)
        return token, self._login_signer.dumps(token)

    def login_token_ok(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted:
            return False
        try:
            expected = str(self._login_signer.loads(cookie))
        except BadSignature:
            return False
        return hmac.compare_digest(expected, submitted)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    """The form carried this session's token (a cross-site form cannot know it)."""
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted or "")


def load_or_create_secret(path: Path) -> bytes:
    """The cookie-signing key, kept across restarts so the post's screen stays logged in."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    # FSYNC_FILE: a key lost with its rename in a power cut only logs the post's screen out.
    atomic_write(path, data, durability=Durability.FSYNC_FILE, mode=0o600)
    return data
