"""The HTTP side every service shares: ``/healthz``, ``/readyz``, ``/metrics``, the lifespan that
runs the service's Kafka side, and error answers in one shape."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.shared.audit import verify
from services.shared.errors import Conflict, NotFound, RuleViolation
from services.shared.outbox import published_head
from services.shared.runtime import ServiceRuntime
from services.shared.telemetry import HTTP_REQUESTS, HTTP_SECONDS

#: Extra readiness conditions of a service (for example, its projections caught up).
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def create_http_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    readiness_checks: Sequence[ReadinessCheck] = (),
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # FastStream's FastAPI plugin is deprecated in 0.7: the broker starts here instead.
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # By route template (/objectives/{objective_id}), never the raw path: bounded labels.
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
            HTTP_SECONDS.labels(request.method, route).observe(time.perf_counter() - started)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": runtime.settings.service}

    @app.get("/readyz", tags=["operations"], summary="Broker and store reachable, caught up")
    async def readyz() -> JSONResponse:
        report = await runtime.readiness()
        for check in readiness_checks:
            extra = await check()
            report["checks"].update(extra)
            report["ready"] = report["ready"] and all(extra.values())
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    @app.get("/audit/verify", tags=["audit"], summary="Verify the tamper-evident log")
    async def audit_verify() -> dict[str, Any]:
        """Recompute the hash chain over the whole event log, and compare its end with the
        head published on audit.heads: ``ok``, or the first broken position and why."""
        head = await published_head(
            runtime.settings.kafka_client_options(), runtime.application.name
        )
        recorder = runtime.application.tracking_recorder
        verdict = await asyncio.to_thread(lambda: verify(recorder.select_links(), head))
        return verdict.as_dict() | {
            "service": runtime.settings.service,
            "published_head": {"position": head[0], "hash": head[1]} if head else None,
        }

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RuleViolation)
    async def rule_violation(_: Request, error: RuleViolation) -> JSONResponse:
        # The shape of FastAPI's own validation errors, so clients parse one format.
        detail: list[dict[str, Any]] = [
            {"loc": ["body", *v.field], "msg": v.message, "type": v.rule} for v in error.violations
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, error: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    for router in routers:
        app.include_router(router)
    return app
