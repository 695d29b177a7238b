"""Run the goal service: ``python -m services.goal`` (settings from the environment)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from contracts import ALIGNMENT_EVENTS, GOAL_EVENTS, METRICS_EVENTS
from services.goal.api import router
from services.goal.application import GoalApplication
from services.goal.messaging import KPINotes, ScoreNotes, integration_event
from services.shared.runtime import ServiceRuntime
from services.shared.service_app import create_http_app
from services.shared.settings import Settings
from services.shared.store import store_environment


def create_app(settings: Settings) -> FastAPI:
    application = GoalApplication(env=store_environment(settings))
    runtime = ServiceRuntime(settings, application, (GOAL_EVENTS, integration_event))
    runtime.consume([ALIGNMENT_EVENTS], ScoreNotes())
    # A consumer of its own: the readings that fill metrics.events are skipped, and they
    # must not hold up the scores.
    runtime.consume([METRICS_EVENTS], KPINotes(), KPINotes.event_types)

    def catalogue_caught_up() -> dict[str, bool]:
        # The catalogue follows every commit (GoalApplication.on_recorded): behind the head
        # only for the moment between a commit and its notification, or if it is stuck.
        head = application.max_position()
        return {"catalogue": application.catalogue.position >= head}

    return create_http_app(
        runtime,
        title="OKR goal service",
        description="Objectives, key results and check-ins; consumes alignment.events and "
        "metrics.events, publishes goal.events.",
        routers=[router(application)],
        readiness_checks=[catalogue_caught_up],
    )


def main() -> None:
    settings = Settings(service="goal")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s goal %(levelname)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
