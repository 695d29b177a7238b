"""The console's /metrics: requests by route template, open server-sent event streams, and
only the console's own series."""

from __future__ import annotations

import asyncio
from typing import cast

from fastapi import Request
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.shared.settings import Settings
from services.web.live import LiveFeed, stream
from services.web.telemetry import REGISTRY
from tests.unit.test_web_console import OBJECTIVE_ID, WRITER_TOKEN, console, sign_in

__all__ = ["console"]  # the fixture, used by its name


def requests(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("okr_http_requests_total", labels) or 0.0


def open_streams() -> float:
    return REGISTRY.get_sample_value("okr_web_sse_connections") or 0.0


def test_metrics_count_requests_by_route_template_without_signing_in(
    console: TestClient,
) -> None:
    routes = [
        ("POST", "/signin", "303"),
        ("GET", "/objectives/{objective_id}/history", "404"),
        ("GET", "/static", "200"),
    ]
    before = [requests(*route) for route in routes]
    assert sign_in(console, WRITER_TOKEN).status_code == 303
    assert console.get(f"/objectives/{OBJECTIVE_ID}/history").status_code == 404
    assert console.get("/static/console.css").status_code == 200
    assert [requests(*route) - count for route, count in zip(routes, before, strict=True)] == [
        1,
        1,
        1,
    ]

    answer = console.get("/metrics")
    assert answer.status_code == 200
    families = {family.name for family in text_string_to_metric_families(answer.text)}
    assert {"okr_http_requests", "okr_web_sse_connections", "okr_web_live_events"} <= families
    assert OBJECTIVE_ID not in answer.text  # route templates, never raw paths


def test_metrics_hold_the_consoles_series_only() -> None:
    """The services' plumbing series are in the process too, but would only read zero."""
    names = {family.name for family in REGISTRY.collect()}
    assert "okr_http_requests" in names
    assert not any(name.startswith(("okr_outbox", "okr_store", "okr_consumer")) for name in names)


class OpenPage:
    """What ``stream`` asks of a request: whether the page went away."""

    async def is_disconnected(self) -> bool:
        return False


def test_an_open_stream_is_counted_until_it_closes() -> None:
    async def scenario() -> tuple[float, float, float]:
        before = open_streams()
        events = stream(cast(Request, OpenPage()), LiveFeed(Settings()))
        assert (await anext(events)).startswith("retry:")
        opened = open_streams()
        await events.aclose()
        return before, opened, open_streams()

    before, opened, closed = asyncio.run(scenario())
    assert (opened - before, closed - before) == (1, 0)
