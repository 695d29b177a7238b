"""What the routes of every service take from a request, declared once: who acts, the
correlation id, the instant to answer as of, and one-line text in bodies. (The service
itself, its runtime or application, a route takes with ``runtime.Runtime`` or
``runtime.application_of``.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request
from pydantic import Field

from services.shared.auth import Principal
from services.shared.http import Instant

#: Who made a change when the request names no one (authentication off, no ``X-Actor``).
ANONYMOUS = "anonymous"

#: One line of text: no control characters (NUL, line breaks, escape sequences) in names.
LINE = r"^[^\x00-\x1f\x7f]*$"
Line = Annotated[str, Field(max_length=300, pattern=LINE)]


def request_actor(
    request: Request,
    x_actor: Annotated[
        str | None,
        Header(
            alias="X-Actor",
            min_length=1,
            max_length=200,
            description="Who makes the change, when authentication is off; with it, the "
            "token's name is the actor.",
        ),
    ] = None,
) -> str | None:
    """Who makes the change: the token's owner when authenticated (a header cannot claim
    to be someone else), else the ``X-Actor`` header."""
    principal = getattr(request.state, "principal", None)
    return principal.name if isinstance(principal, Principal) else x_actor


#: Who the request says makes the change, if anyone.
RequestActor = Annotated[str | None, Depends(request_actor)]


def _actor(actor: RequestActor) -> str:
    return actor or ANONYMOUS


#: Who makes the change: recorded on the event.
Actor = Annotated[str, Depends(_actor)]
CorrelationId = Annotated[str | None, Header(alias="X-Correlation-ID", max_length=200)]
AsOf = Annotated[
    Instant | None,
    Query(description="An instant (ISO-8601 with timezone): answer as things were then."),
]
