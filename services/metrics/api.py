"""The metrics service's HTTP JSON API: the KPI catalogue and reading ingestion."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from contracts import (
    KPI_KEY_PATTERN,
    IngestReport,
    KPIReading,
    OutcomeView,
    describe_validation_error,
)
from services.metrics.application import (
    DefinitionHistoryEntry,
    KPIStatus,
    MetricsApplication,
    RecordedReading,
)
from services.metrics.commands import KPICommand
from services.shared.errors import RuleViolation
from services.shared.http import BODY_ERRORS, Instant, JSONRoute, error_responses
from services.shared.http_parameters import Actor, AsOf, CorrelationId, RequestActor
from services.shared.runtime import application_of

MAX_BATCH = 10_000
KPIKey = Annotated[str, Path(pattern=KPI_KEY_PATTERN, description="The KPI's key")]
Metrics = Annotated[MetricsApplication, Depends(application_of(MetricsApplication))]
ReadingsBody = Annotated[
    dict[str, Any] | list[Any],
    Body(description="One reading, or a list of up to 10,000 readings."),
]


def _key(item: dict[str, Any]) -> str | None:
    """The reading's KPI key to name in an outcome, if it can be one (not a 10 MB string)."""
    key = item.get("kpi")
    return key if isinstance(key, str) and len(key) <= 128 else None


def _parse(
    items: list[Any], kpi: str | None
) -> tuple[list[KPIReading], list[int], list[OutcomeView]]:
    """Validate each item on its own, so one bad reading does not refuse the batch."""
    readings: list[KPIReading] = []
    positions: list[int] = []
    rejected: list[OutcomeView] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            rejected.append(
                OutcomeView(
                    index=index,
                    kpi=None,
                    reading_id=None,
                    status="rejected",
                    reason="a reading is a JSON object",
                )
            )
            continue
        if kpi is not None and item.setdefault("kpi", kpi) != kpi:
            rejected.append(
                OutcomeView(
                    index=index,
                    kpi=_key(item),
                    reading_id=None,
                    status="rejected",
                    reason=f"kpi: another KPI's reading posted to /kpis/{kpi}/readings",
                )
            )
            continue
        try:
            readings.append(KPIReading.model_validate(item))
            positions.append(index)
        except ValidationError as error:
            reason = describe_validation_error(error)
            rejected.append(
                OutcomeView(
                    index=index, kpi=_key(item), reading_id=None, status="rejected", reason=reason
                )
            )
    return readings, positions, rejected


async def ingest(
    application: MetricsApplication,
    body: dict[str, Any] | list[Any],
    kpi: str | None,
    actor: str | None,
    correlation_id: str | None,
) -> Response:
    """Record the readings of a request: 201 when any was recorded, else 200; a single
    reading (not a list) that is rejected is answered 422."""
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_BATCH:
        raise RuleViolation.single(
            (), "batch_too_large", f"{len(items)} readings: at most {MAX_BATCH} per request"
        )
    readings, positions, outcomes = _parse(items, kpi)
    recorded = await asyncio.to_thread(application.record, readings, actor, correlation_id)
    outcomes += [
        outcome.model_copy(update={"index": positions[outcome.index]}) for outcome in recorded
    ]
    outcomes.sort(key=lambda outcome: outcome.index)
    if not isinstance(body, list):
        (single,) = outcomes
        if single.status == "rejected":
            raise RuleViolation.single((), "reading_rejected", single.reason or "rejected")
    report = IngestReport(
        recorded=sum(o.status == "recorded" for o in outcomes),
        duplicates=sum(o.status == "duplicate" for o in outcomes),
        rejected=sum(o.status == "rejected" for o in outcomes),
        outcomes=outcomes,
    )
    code = status.HTTP_201_CREATED if report.recorded else status.HTTP_200_OK
    return JSONResponse(report.model_dump(mode="json"), status_code=code)


router = APIRouter(tags=["kpis"], route_class=JSONRoute)


@router.put(
    "/kpis/{key}",
    response_model=KPIStatus,
    responses={
        201: {"model": KPIStatus, "description": "Defined"},
        **error_responses(*BODY_ERRORS),
    },
)
async def define_kpi(
    key: KPIKey,
    command: KPICommand,
    response: Response,
    application: Metrics,
    actor: Actor,
    correlation_id: CorrelationId = None,
) -> KPIStatus:
    """Define a KPI (201) or redefine it (200): a `KPIDefined` event either way."""
    _, created = await asyncio.to_thread(
        application.define_kpi, key, command, actor, correlation_id
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return application.status(key)


@router.get("/kpis", response_model=list[KPIStatus])
async def list_kpis(application: Metrics) -> list[KPIStatus]:
    return [application.status(key) for key in sorted(application.kpis)]


@router.get("/kpis/{key}", response_model=KPIStatus, responses=error_responses(404))
async def get_kpi(
    key: KPIKey,
    application: Metrics,
    as_of: Annotated[
        AsOf, Query(description="An instant (ISO-8601 with timezone): the KPI as it was then.")
    ] = None,
) -> KPIStatus:
    """Definition, latest value by observed time, health, stale and stagnant flags; with
    ``as_of``, as they were at that instant (replayed from the log up to then)."""
    if as_of is not None:
        return await asyncio.to_thread(application.status_as_of, key, as_of)
    return application.status(key)


@router.get(
    "/kpis/{key}/history",
    response_model=list[DefinitionHistoryEntry],
    responses=error_responses(404),
)
async def kpi_history(key: KPIKey, application: Metrics) -> list[DefinitionHistoryEntry]:
    """Every definition of the KPI, oldest first, with actor, time and field-level
    before/after changes."""
    return await asyncio.to_thread(application.definition_history, key)


@router.get(
    "/kpis/{key}/readings",
    response_model=list[RecordedReading],
    responses=error_responses(404),
)
async def kpi_readings(
    key: KPIKey,
    application: Metrics,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCH)] = 1000,
) -> list[RecordedReading]:
    """Readings observed in [since, until), by observed time, read from the event log."""
    return await asyncio.to_thread(application.readings, key, since, until, limit)


@router.post(
    "/kpis/{key}/readings",
    response_model=IngestReport,
    responses={201: {"model": IngestReport}, **error_responses(404, *BODY_ERRORS)},
)
async def record_kpi_readings(
    key: KPIKey,
    body: ReadingsBody,
    application: Metrics,
    actor: RequestActor,
    correlation_id: CorrelationId = None,
) -> Response:
    """Record one reading or a batch for this KPI; each is recorded, a duplicate (by
    reading id) or rejected with the reason."""
    application.get_kpi(key)
    return await ingest(application, body, key, actor, correlation_id)


@router.post(
    "/readings",
    response_model=IngestReport,
    responses={201: {"model": IngestReport}, **error_responses(*BODY_ERRORS)},
)
async def record_readings(
    body: ReadingsBody,
    application: Metrics,
    actor: RequestActor,
    correlation_id: CorrelationId = None,
) -> Response:
    """Record one reading or a batch of readings of any KPIs."""
    return await ingest(application, body, None, actor, correlation_id)
