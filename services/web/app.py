"""The console's FastAPI application: its routers, static files, the live feed in the
lifespan, answers for what the services refuse, and the headers every page carries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.shared.http import RequestMeter
from services.shared.settings import Settings
from services.web import audit, gaps, key_results, kpis, live, objectives, signin, telemetry, tree
from services.web.backend import Backend, ServiceRefused, ServiceUnavailable
from services.web.live import LiveFeed
from services.web.pages import (
    HERE,
    BadInstant,
    Console,
    CrossSiteRequest,
    SignInRequired,
    console,
    link,
    render,
    signed_in,
)
from services.web.sessions import SESSION_COOKIE, SessionStore
from services.web.settings import WebSettings

#: Scripts, styles and data from this console only; no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


def create_app(
    settings: WebSettings,
    platform: Settings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    state = Console(
        settings=settings,
        backend=Backend(settings, transport),
        sessions=SessionStore(settings.session_idle_seconds, settings.max_sessions),
        tokens=platform.tokens(),
        feed=LiveFeed(platform),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.feed.start()
        try:
            yield
        finally:
            await state.feed.stop()
            await state.backend.close()

    app = FastAPI(
        title="OKR web console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.console = state
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (signin, tree, objectives, key_results, kpis, gaps, audit, live):
        app.include_router(module.router)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # Added last, so outermost: it counts the requests every other layer answers too.
    app.add_middleware(
        RequestMeter,
        requests=telemetry.HTTP_REQUESTS,
        seconds=telemetry.HTTP_SECONDS,
        route_of=telemetry.route_label,
    )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return telemetry.exposition()

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": "web"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready = state.feed.ready
        return JSONResponse(
            {"ready": ready, "checks": {"live_feed": ready}}, status_code=200 if ready else 503
        )

    _answer_failures(app)
    return app


def _answer_failures(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, _: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            # A fragment cannot show the form: htmx loads the whole sign-in page instead.
            return Response(status_code=401, headers={"HX-Redirect": "/signin"})
        target = link(request.url.path, None, **dict(request.query_params))
        return RedirectResponse(link("/signin", None, next=target), status_code=303)

    @app.exception_handler(CrossSiteRequest)
    async def refuse_cross_site(request: Request, _: CrossSiteRequest) -> Response:
        return _problem(
            request,
            403,
            "Refused: this form was not sent from this console's own page (or the page was "
            "too old). Reload the page and try again.",
        )

    @app.exception_handler(BadInstant)
    async def bad_instant(request: Request, error: BadInstant) -> Response:
        return _problem(
            request, 400, f"{error}: give one such as 2026-03-31T12:00 (UTC) or with a zone."
        )

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, error: ServiceUnavailable) -> Response:
        return _problem(request, 503, f"The {error.service} service does not answer; try again.")

    @app.exception_handler(ServiceRefused)
    async def refused(request: Request, error: ServiceRefused) -> Response:
        if error.status == 401:
            # The services no longer know the token: this session is over.
            console(request).sessions.close(request.cookies.get(SESSION_COOKIE))
            return RedirectResponse("/signin", status_code=303)
        if error.status == 403:
            message = f"Forbidden by the {error.service} service: {error.message}."
            return _problem(request, 403, message)
        if error.status == 404:
            return _problem(request, 404, f"Not found: {error.message}.")
        return _problem(
            request, 502, f"The {error.service} service answered {error.status}: {error.message}"
        )


def _problem(request: Request, status_code: int, message: str) -> HTMLResponse:
    try:
        session = signed_in(request)
    except SignInRequired:
        session = None
    return render(request, "problem.html", session, status_code=status_code, message=message)
