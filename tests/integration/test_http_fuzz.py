"""Schemathesis against each service's own OpenAPI document: generated requests, valid and
invalid, answered in process by the service's ASGI app on a real SQLite store.

The apps are built by each service's ``create_app``, as ``__main__`` builds them, without their
lifespan: it starts the Kafka side (consumers, outbox relay), which no HTTP answer waits for,
and schemathesis's pytest plugin ends every lifespan after each operation, where the service's
runtime cannot start twice. An embedded broker still runs, because ``/audit/verify`` reads the
head published on it; ``/readyz`` answers 503 (broker client not started), which it documents.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from services.shared.local_broker import ApacheKafka
from tests.integration.test_http_hostile import SERVICES, service_app

pytestmark = pytest.mark.integration

#: A fixed seed and no example database: the same requests on every run and machine. The
#: examples per operation keep the file well under a minute on two cores; the coverage phase
#: adds its boundary and type-mutation cases on top, in every mode (valid and invalid).
CONFIG = schemathesis.Config.from_dict(
    {"seed": 20261, "generation": {"mode": "all", "max-examples": 40, "database": "none"}}
)

CHECKS: list[schemathesis.CheckFunction] = [
    # The rule of the project: bad input is a 4xx, never a 500.
    not_a_server_error,
    # Invalid requests (negative mode) are refused with a 4xx, not coerced and stored: JSON
    # false as a warning, "12" as an instant.
    negative_data_rejection,
    # The document is truthful: every status, media type and body answered is declared, so
    # clients can rely on it for errors (404, 409, 413, 415, 422) as for success.
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Not checked: positive_data_acceptance (a schema-valid objective can still break a domain
# rule, such as a target equal to its baseline, and generated ids name nothing: 422 and 404
# are right answers), and the stateful, auth and header checks (no links, no auth yet).


def openapi_schema(service: str) -> schemathesis.BaseSchema:
    """The service's document, from an app built on a throwaway store at collection time:
    ``@schema.parametrize`` needs it before any fixture runs; it depends on the routes only."""
    with tempfile.TemporaryDirectory() as data_dir, service_app(service, Path(data_dir)) as app:
        document = app.openapi()
    return schemathesis.openapi.from_dict(document, config=CONFIG)


@asynccontextmanager
async def without_kafka(_: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.fixture(scope="module")
def apps(
    kafka: ApacheKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FastAPI]]:
    with ExitStack() as stack:
        built = {}
        for service in SERVICES:
            app = stack.enter_context(
                service_app(service, tmp_path_factory.mktemp(service), kafka.bootstrap_servers)
            )
            app.router.lifespan_context = without_kafka
            built[service] = app
        yield built


def call_and_validate(case: schemathesis.Case[Any], app: FastAPI) -> None:
    excluded: list[schemathesis.CheckFunction] = []
    if case.path == "/readyz":  # 503 is its answer while the broker client is down: always here
        excluded.append(not_a_server_error)
    case.call_and_validate(app=app, checks=CHECKS, excluded_checks=excluded)


goal = openapi_schema("goal")
metrics = openapi_schema("metrics")
alignment = openapi_schema("alignment")


@goal.parametrize()
def test_goal_service(case: schemathesis.Case[Any], apps: dict[str, FastAPI]) -> None:
    call_and_validate(case, apps["goal"])


@metrics.parametrize()
def test_metrics_service(case: schemathesis.Case[Any], apps: dict[str, FastAPI]) -> None:
    call_and_validate(case, apps["metrics"])


@alignment.parametrize()
def test_alignment_service(case: schemathesis.Case[Any], apps: dict[str, FastAPI]) -> None:
    call_and_validate(case, apps["alignment"])
