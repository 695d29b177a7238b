"""The console's Prometheus metrics, served at ``/metrics`` (deploy/prometheus/METRICS.md).

They live in a registry of their own: the process imports the services' shared telemetry
too, whose store, outbox and consumer series would only ever read zero for the console."""

from __future__ import annotations

from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.types import Scope

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# The services' names and labels, so that the same rules and dashboards read the console.
HTTP_REQUESTS = Counter(
    "okr_http_requests_total",
    "HTTP requests by route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "okr_http_request_duration_seconds",
    "HTTP request duration by route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
SSE_CONNECTIONS = Gauge(
    "okr_web_sse_connections",
    "Server-sent event streams open to pages (/live).",
    registry=REGISTRY,
)
LIVE_EVENTS = Counter(
    "okr_web_live_events_total",
    "Events the live feed received from alignment.events.",
    registry=REGISTRY,
)


def route_label(scope: Scope) -> str:
    """The route template, never the raw path (bounded labels); static files are one
    route, and whatever matched nothing is ``unmatched``."""
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str):
        return route
    return "/static" if scope["path"].startswith("/static/") else "unmatched"


def exposition() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
