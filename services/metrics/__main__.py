"""Run the metrics service: ``python -m services.metrics`` (settings from the environment)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY

from contracts import KPI_READINGS, METRICS_EVENTS
from services.metrics import api
from services.metrics.application import MetricsApplication
from services.metrics.policy import ReadingIngestor
from services.metrics.publishing import integration_event
from services.metrics.telemetry import KPICollector
from services.shared.runtime import ServiceRuntime
from services.shared.service_app import create_http_app
from services.shared.settings import Settings
from services.shared.store import store_environment


def create_app(settings: Settings) -> FastAPI:
    application = MetricsApplication(
        env=store_environment(settings),
        stagnation_window=settings.stagnation_window,
        stagnation_tolerance=settings.stagnation_tolerance,
    )
    runtime = ServiceRuntime(settings, application, (METRICS_EVENTS, integration_event))
    REGISTRY.register(KPICollector(application))
    runtime.subscribe(
        [KPI_READINGS], ReadingIngestor(application, runtime.dead_letters).handle_batch
    )
    return create_http_app(
        runtime,
        title="OKR metrics service",
        description="KPI catalogue and readings; consumes kpi.readings, publishes metrics.events.",
        routers=[api.router],
    )


def main() -> None:
    settings = Settings(service="metrics")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s metrics %(levelname)s %(message)s")
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
