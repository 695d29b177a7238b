"""The request metrics' middleware (``RequestMeter``): each request counted and timed once, by
route template and answered status, whatever layer answered it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.shared.http import BodyLimit, RequestMeter, route_template


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def client(registry: CollectorRegistry) -> TestClient:
    app = FastAPI()

    @app.get("/objectives/{objective_id}")
    def objective(objective_id: str) -> dict[str, str]:
        return {"id": objective_id}

    @app.post("/readings")
    def readings() -> dict[str, str]:
        return {}

    @app.get("/broken")
    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(BodyLimit, limit=10)
    app.add_middleware(
        RequestMeter,
        requests=Counter("requests", "", ["method", "route", "status"], registry=registry),
        seconds=Histogram("seconds", "", ["method", "route"], registry=registry),
        route_of=route_template,
    )
    return TestClient(app, raise_server_exceptions=False)


def counted(registry: CollectorRegistry, method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return registry.get_sample_value("requests_total", labels) or 0.0


def timed(registry: CollectorRegistry, method: str, route: str) -> float:
    labels = {"method": method, "route": route}
    return registry.get_sample_value("seconds_count", labels) or 0.0


def test_requests_are_counted_by_route_template_and_status(
    client: TestClient, registry: CollectorRegistry
) -> None:
    assert client.get("/objectives/o-1").status_code == 200
    assert client.get("/objectives/o-2").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert counted(registry, "GET", "/objectives/{objective_id}", "200") == 2
    assert timed(registry, "GET", "/objectives/{objective_id}") == 2
    assert counted(registry, "GET", "unmatched", "404") == 1


def test_what_an_inner_layer_answers_is_counted_too(
    client: TestClient, registry: CollectorRegistry
) -> None:
    answer = client.post("/readings", content=b"x" * 100, headers={"content-length": "100"})
    assert answer.status_code == 413
    assert counted(registry, "POST", "unmatched", "413") == 1  # refused before routing


def test_a_request_that_fails_counts_as_a_500(
    client: TestClient, registry: CollectorRegistry
) -> None:
    assert client.get("/broken").status_code == 500
    assert counted(registry, "GET", "/broken", "500") == 1
    assert timed(registry, "GET", "/broken") == 1
