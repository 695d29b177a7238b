"""Run the alignment service: ``python -m services.alignment`` (settings from the environment)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY

from contracts import ALIGNMENT_EVENTS, GOAL_EVENTS, METRICS_EVENTS
from services.alignment.api import router
from services.alignment.application import AlignmentApplication
from services.alignment.policy import AlignmentPolicy
from services.alignment.publishing import integration_event
from services.alignment.telemetry import AlignmentCollector
from services.shared.runtime import ServiceRuntime
from services.shared.service_app import create_http_app
from services.shared.settings import Settings
from services.shared.store import store_environment


def create_app(settings: Settings) -> FastAPI:
    application = AlignmentApplication(
        env=store_environment(settings),
        stagnation_window=settings.stagnation_window,
        stagnation_tolerance=settings.stagnation_tolerance,
    )
    runtime = ServiceRuntime(settings, application, (ALIGNMENT_EVENTS, integration_event))
    policy = AlignmentPolicy(application, settings.gap_settle_seconds)
    REGISTRY.register(AlignmentCollector(application))
    runtime.consume([GOAL_EVENTS, METRICS_EVENTS], policy)
    runtime.every(settings.reevaluate_seconds, policy.reevaluate, "re-evaluation")
    if settings.gap_settle_seconds > 0:
        runtime.every(settings.gap_settle_seconds, policy.settle_pending_gaps, "gap settlement")
    return create_http_app(
        runtime,
        title="OKR alignment service",
        description="Alignment graph, live scores and gaps; consumes goal.events and "
        "metrics.events, publishes alignment.events.",
        routers=[router],
    )


def main() -> None:
    settings = Settings(service="alignment")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s alignment %(levelname)s %(message)s"
    )
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
