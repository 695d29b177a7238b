"""Run the goal service: ``python -m services.goal`` (settings from the environment)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from contracts import ALIGNMENT_EVENTS, GOAL_EVENTS, METRICS_EVENTS
from services.goal import api
from services.goal.application import GoalApplication
from services.goal.policy import Notes
from services.goal.publishing import integration_event
from services.shared.runtime import ServiceRuntime
from services.shared.service_app import create_http_app
from services.shared.settings import Settings
from services.shared.store import store_environment


def create_app(settings: Settings) -> FastAPI:
    application = GoalApplication(env=store_environment(settings))
    runtime = ServiceRuntime(settings, application, (GOAL_EVENTS, integration_event))
    runtime.consume(
        [ALIGNMENT_EVENTS, METRICS_EVENTS],
        Notes(),
        Notes.event_types,
        fetch_wait_seconds=settings.goal_notes_fetch_wait_seconds,
    )
    return create_http_app(
        runtime,
        title="OKR goal service",
        description="Objectives, key results and check-ins; consumes alignment.events and "
        "metrics.events, publishes goal.events.",
        routers=[api.router],
        readiness_checks=[application.readiness],
    )


def main() -> None:
    settings = Settings(service="goal")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s goal %(levelname)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
