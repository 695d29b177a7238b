"""The HTTP app of a service process: the service's routers beside the operations endpoints
(``/healthz``, ``/readyz``, ``/metrics``) and ``/audit/verify``, under the rules of ``http``
and, when tokens are configured, bearer authentication. Its lifespan starts and stops the
service's Kafka side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from services.shared import audit_api
from services.shared.auth import Authentication, Tokens, document_security
from services.shared.http import (
    MAX_BODY_BYTES,
    BodyLimit,
    RequestMeter,
    answer_errors,
    route_template,
)
from services.shared.runtime import Runtime, ServiceRuntime
from services.shared.telemetry import HTTP_REQUESTS, HTTP_SECONDS

#: An extra readiness condition of a service (for example, its projections caught up), by
#: name; run in a worker thread, as it may read the store.
ReadinessCheck = Callable[[], dict[str, bool]]


class ReadinessReport(BaseModel):
    ready: bool
    checks: dict[str, bool] = Field(description="Each condition: broker, store, tasks, ...")
    log_position: int
    outbox_position: int
    outbox_backlog: int


operations = APIRouter(tags=["operations"])


@operations.get("/healthz", summary="The process is alive")
async def healthz(runtime: Runtime) -> dict[str, str]:
    return {"status": "alive", "service": runtime.settings.service}


@operations.get(
    "/readyz",
    summary="Broker and store reachable, caught up",
    response_model=ReadinessReport,
    responses={503: {"model": ReadinessReport, "description": "Not ready: what fails"}},
)
async def readyz(runtime: Runtime, request: Request) -> JSONResponse:
    report = await runtime.readiness()
    checks: Sequence[ReadinessCheck] = request.app.state.readiness_checks
    for check in checks:
        extra = await asyncio.to_thread(check)
        report["checks"].update(extra)
        report["ready"] = report["ready"] and all(extra.values())
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


@operations.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_http_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    readiness_checks: Sequence[ReadinessCheck] = (),
) -> FastAPI:
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=_run(runtime))
    app.state.runtime = runtime
    app.state.readiness_checks = tuple(readiness_checks)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)  # inside measure: 413s are counted
    tokens = runtime.settings.tokens()
    if tokens is not None:
        _authenticate(app, tokens)
    # Added last, so outermost: it counts what every other layer answers too.
    app.add_middleware(
        RequestMeter, requests=HTTP_REQUESTS, seconds=HTTP_SECONDS, route_of=route_template
    )
    answer_errors(app)
    for router in (operations, audit_api.router, *routers):
        app.include_router(router)
    return app


def _run(runtime: ServiceRuntime) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the service's Kafka side runs while the app serves."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # FastStream's FastAPI plugin is deprecated in 0.7: the broker starts here instead.
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    return lifespan


def _authenticate(app: FastAPI, tokens: Tokens) -> None:
    """Require bearer tokens (before a body is read), and say so in the OpenAPI document:
    documented only when enforced, so the document tells what this instance does."""
    app.add_middleware(Authentication, tokens=tokens)
    openapi = app.openapi

    def secured_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_security(openapi())
        return app.openapi_schema

    app.openapi = secured_openapi  # type: ignore[method-assign]
