"""What every page shares: the console's state, the signed-in session, the instant a page
is looked at (``?as_of=``), the CSRF check of a form, and rendering with Jinja2."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from services.shared.auth import Role, Tokens
from services.web.backend import Backend, UserClient
from services.web.sessions import CSRF_FIELD, SESSION_COOKIE, Session, SessionStore, cross_site
from services.web.settings import WebSettings

if TYPE_CHECKING:
    from services.web.live import LiveFeed

HERE = Path(__file__).resolve().parent
#: An instant in a link: ISO-8601 in UTC, to the second.
INSTANT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: What a page shows for a value there is not (yet).
NOTHING = "\N{EN DASH}"


def template_environment() -> jinja2.Environment:
    # Autoescape on for every template: all text from users (titles, comments, names) is
    # escaped; nothing is marked safe.
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["percent"] = lambda value: NOTHING if value is None else f"{value:.0%}"
    environment.filters["number"] = _number
    environment.filters["words"] = lambda value: (
        NOTHING if value is None else str(value).replace("_", " ")
    )
    environment.filters["when"] = _when
    return environment


def _number(value: Any) -> str:
    if value is None:
        return NOTHING
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"


def _when(value: str | datetime | None) -> str:
    """An instant as people read it, in UTC to the minute."""
    if not value:
        return NOTHING
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


TEMPLATES = Jinja2Templates(env=template_environment())


@dataclass
class Console:
    """The console process's state, shared by every request."""

    settings: WebSettings
    backend: Backend
    sessions: SessionStore
    #: The accepted tokens (hashes), to tell who signs in; None when authentication is off.
    tokens: Tokens | None
    feed: LiveFeed


class SignInRequired(Exception):
    """No session (or an expired one): the page redirects to the sign-in form."""


class BadInstant(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(f"not an instant: {text!r}")


class CrossSiteRequest(Exception):
    """A form post refused: it came from another site, or without this session's token."""


def console(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def signed_in(request: Request) -> Session:
    session = console(request).sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired
    return session


CurrentSession = Annotated[Session, Depends(signed_in)]


def services(request: Request, session: CurrentSession) -> UserClient:
    return console(request).backend.as_user(session.token)


Services = Annotated[UserClient, Depends(services)]


def parse_instant(text: str) -> datetime:
    """ISO-8601; without a timezone (a browser's datetime-local field) it is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInstant(text) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_of(
    as_of: Annotated[
        str | None, Query(description="Look at the past: an ISO-8601 instant (UTC if no zone)")
    ] = None,
) -> datetime | None:
    return parse_instant(as_of) if as_of else None


AsOf = Annotated[datetime | None, Depends(as_of)]


async def checked_form(request: Request, session: CurrentSession) -> FormData:
    """The posted form, once it is known to come from this console's own page."""
    if cross_site(request.method, dict(request.headers), request.url.netloc):
        raise CrossSiteRequest
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if not session.csrf_matches(token if isinstance(token, str) else None):
        raise CrossSiteRequest
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


def link(path: str, when: datetime | None = None, **query: Any) -> str:
    """A path with its query, carrying the instant looked at."""
    pairs = {k: v for k, v in query.items() if v not in (None, "", False)}
    if when is not None:
        pairs["as_of"] = when.astimezone(UTC).strftime(INSTANT_FORMAT)
    return f"{path}?{urlencode(pairs)}" if pairs else path


def render(
    request: Request,
    template: str,
    session: Session | None,
    when: datetime | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    shared = {
        "session": session,
        "csrf": session.csrf if session else "",
        "as_of": when,
        "as_of_field": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if when else "",
        "as_of_param": when.astimezone(UTC).strftime(INSTANT_FORMAT) if when else "",
        # The page's own query but the instant: what the time-travel control keeps.
        "query": {k: v for k, v in request.query_params.items() if k != "as_of"},
        # Changes are for the present only, and for writers.
        "may_write": bool(session and session.may(Role.writer)) and when is None,
        "may_audit": bool(session and session.may(Role.auditor)),
        "link": link,
        "path": request.url.path,
        "notices": session.take_notices() if session else [],
    }
    return TEMPLATES.TemplateResponse(request, template, shared | context, status_code=status_code)
