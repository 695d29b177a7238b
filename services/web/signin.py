"""Signing in with a bearer token, and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.shared.auth import Principal, Role
from services.web.pages import CheckedForm, CrossSiteRequest, CurrentSession, console, render
from services.web.sessions import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    cross_site,
    new_signin_secret,
    same_secret,
)

router = APIRouter(include_in_schema=False)

#: Who signs in while the services run without authentication (closed networks only).
ANYONE = Principal("anonymous", frozenset(Role))


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this console only, never another site."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def _signin_page(
    request: Request, target: str, problem: str | None = None, status_code: int = 200
) -> HTMLResponse:
    secret = new_signin_secret()
    response = render(
        request,
        "signin.html",
        None,
        status_code=status_code,
        signin_secret=secret,
        target=target,
        problem=problem,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        secret,
        httponly=True,
        samesite="strict",
        secure=console(request).settings.cookie_secure,
        path="/signin",
    )
    return response


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request, next: str | None = None) -> Response:
    return _signin_page(request, _safe_next(next))


@router.post("/signin", response_class=HTMLResponse)
async def signin(
    request: Request,
    token: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    if cross_site(request.method, dict(request.headers), request.url.netloc) or not same_secret(
        request.cookies.get(SIGNIN_COOKIE, ""), csrf_token or None
    ):
        raise CrossSiteRequest
    state = console(request)
    token = token.strip()
    principal = ANYONE if state.tokens is None else state.tokens.authenticate(token)
    if principal is None:
        return _signin_page(
            request,
            _safe_next(next),
            "This token is not one the platform knows. Check it and try again.",
            status_code=401,
        )
    session_id, _ = state.sessions.open(principal, token)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=state.settings.cookie_secure,
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request, _: CurrentSession, __: CheckedForm) -> Response:
    console(request).sessions.close(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
