"""Who is signed in: server-side sessions keyed by a random id, and the CSRF rules.

The bearer token stays in this process's memory: the browser holds only the session id, in
an HttpOnly, SameSite=Strict cookie, so the token reaches neither a page, a URL, a cookie nor a
log, and signing out forgets it for good. (A token sealed into the cookie would survive a
restart, but a copied cookie would then stay usable until it expired.) A restart signs
everyone out; several console processes need sticky sessions.

Every form carries a CSRF token (the session's, or for the sign-in form one paired with a
cookie), and a POST that a browser says comes from another site is refused outright.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from services.shared.auth import Principal, Role

SESSION_COOKIE = "okr_session"
#: The sign-in form's CSRF value, before there is a session (double submit).
SIGNIN_COOKIE = "okr_signin"
CSRF_FIELD = "csrf_token"


@dataclass
class Session:
    principal: Principal
    #: The user's bearer token: sent to the services, never to the browser.
    token: str = field(repr=False)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    last_seen: float = field(default_factory=lambda: time.monotonic())
    #: What the next page tells the user once (the warnings a save answered with).
    notices: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.principal.name

    def may(self, role: Role) -> bool:
        return role in self.principal.roles

    def take_notices(self) -> list[str]:
        notices, self.notices = self.notices, []
        return notices

    def csrf_matches(self, presented: str | None) -> bool:
        return same_secret(self.csrf, presented)


class SessionStore:
    """Sessions by id, in memory, least recently used first; idle ones expire."""

    def __init__(self, idle_seconds: float, capacity: int) -> None:
        self.idle_seconds = idle_seconds
        self.capacity = capacity
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, principal: Principal, token: str) -> tuple[str, Session]:
        """A new session with a fresh id (never one the browser brought: no fixation)."""
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, token)
        self._sessions[session_id] = session
        while len(self._sessions) > self.capacity:
            self._sessions.popitem(last=False)
        return session_id, session

    def find(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.idle_seconds:
            del self._sessions[session_id]
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)


def same_secret(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


def new_signin_secret() -> str:
    return secrets.token_urlsafe(32)


def cross_site(method: str, headers: dict[str, str], host: str) -> bool:
    """Whether a state-changing request comes from another site, as the browser tells:
    ``Sec-Fetch-Site`` (every current browser sends it), else ``Origin``. Requests that
    carry neither (curl, old browsers) still need the CSRF token."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != host
