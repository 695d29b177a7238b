"""The goal service's HTTP JSON API: objectives, key results and check-ins."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field

from contracts import (
    KeyResultDefinition,
    Level,
    ObjectiveArchived,
    ObjectiveDefinition,
    ObjectiveSet,
    ObjectiveStatus,
)
from services.goal.application import GoalApplication
from services.goal.commands import ArchiveCommand, CheckInCommand, ObjectiveCommand
from services.goal.domain import Objective, ObjectiveScores
from services.goal.publishing import published_form
from services.shared.history import FieldChange, changes
from services.shared.http import BODY_ERRORS, JSONRoute, error_responses
from services.shared.http_parameters import Actor, AsOf, CorrelationId
from services.shared.runtime import application_of

Goal = Annotated[GoalApplication, Depends(application_of(GoalApplication))]

router = APIRouter(prefix="/objectives", tags=["objectives"], route_class=JSONRoute)


SCORE_NOTE = (
    "The latest score and status the alignment service published. A change made by this "
    "request is scored moments later (GET shows it); null only until the first score."
)


class KeyResultView(KeyResultDefinition):
    """A key result with its latest check-in and its latest score, if any."""

    check_in: dict[str, Any] | None = None
    score: dict[str, Any] | None = Field(default=None, description=SCORE_NOTE)


class ObjectiveView(BaseModel):
    objective: ObjectiveDefinition
    key_results: list[KeyResultView]
    version: int = Field(description="Number of changes so far (the aggregate version).")
    created_at: datetime
    modified_at: datetime
    last_actor: str
    score: dict[str, Any] | None = Field(default=None, description=SCORE_NOTE)
    warnings: list[str] = Field(default_factory=list)


class HistoryEntry(BaseModel):
    version: int
    event_type: str
    occurred_at: datetime
    actor: str
    correlation_id: str | None
    payload: dict[str, Any]
    changes: list[FieldChange] = Field(
        description="Field-level differences from the version before."
    )


def view(
    objective: Objective,
    warnings: list[str] | None = None,
    scores: ObjectiveScores | None = None,
) -> ObjectiveView:
    return ObjectiveView(
        objective=objective.definition,
        key_results=[
            KeyResultView(
                **kr.model_dump(),
                check_in=objective.check_ins.get(kr.id),
                score=scores.key_results.get(kr.id) if scores else None,
            )
            for kr in objective.definition.key_results
        ],
        score=scores.objective if scores else None,
        version=objective.version,
        created_at=objective.created_on,
        modified_at=objective.modified_on,
        last_actor=objective.last_actor,
        warnings=warnings or [],
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ObjectiveView,
    responses=error_responses(*BODY_ERRORS),
)
async def create_objective(
    command: ObjectiveCommand, application: Goal, actor: Actor, correlation_id: CorrelationId = None
) -> ObjectiveView:
    """Set a new objective with its key results (an `ObjectiveSet` event)."""
    objective, warnings = await asyncio.to_thread(
        application.create_objective, command, actor, correlation_id
    )
    return view(objective, warnings)


@router.get("", response_model=list[ObjectiveDefinition])
async def list_objectives(
    application: Goal,
    period: Annotated[str | None, Query(description='Label such as "2026-Q4"')] = None,
    owner: str | None = None,
    org_unit: str | None = None,
    level: Level | None = None,
    status: ObjectiveStatus | None = None,
) -> list[ObjectiveDefinition]:
    return application.catalogue.select(
        period=period, owner=owner, org_unit=org_unit, level=level, status=status
    )


async def scored_view(
    application: GoalApplication, objective: Objective, warnings: list[str] | None = None
) -> ObjectiveView:
    """The objective as stored now, with the latest scores known (a change is scored moments
    after it is stored, so a write's answer shows the scores from before it)."""
    scores = await asyncio.to_thread(application.scores, objective.id)
    return view(objective, warnings, scores)


@router.get("/{objective_id}", response_model=ObjectiveView, responses=error_responses(404))
async def get_objective(objective_id: UUID, application: Goal, as_of: AsOf = None) -> ObjectiveView:
    """The objective, each KR's latest check-in, and the latest scores (from the
    alignment service's events); with ``as_of``, all of it as it was at that instant."""
    if as_of is not None:
        then = await asyncio.to_thread(application.objective_as_of, objective_id, as_of)
        scores = await asyncio.to_thread(application.scores_as_of, objective_id, as_of)
        return view(then, scores=scores)
    objective = await asyncio.to_thread(application.get_objective, objective_id)
    return await scored_view(application, objective)


@router.put(
    "/{objective_id}",
    response_model=ObjectiveView,
    responses=error_responses(404, 409, *BODY_ERRORS),
)
async def redefine_objective(
    objective_id: UUID,
    command: ObjectiveCommand,
    application: Goal,
    actor: Actor,
    correlation_id: CorrelationId = None,
) -> ObjectiveView:
    """Redefine the objective (another `ObjectiveSet`). Key results keep their `id`;
    those left out are dropped, those without `id` are added."""
    objective, warnings = await asyncio.to_thread(
        application.redefine_objective, objective_id, command, actor, correlation_id
    )
    return await scored_view(application, objective, warnings)


@router.post(
    "/{objective_id}/archive",
    response_model=ObjectiveView,
    responses=error_responses(404, 409, *BODY_ERRORS),
)
async def archive_objective(
    objective_id: UUID,
    application: Goal,
    actor: Actor,
    command: ArchiveCommand | None = None,
    correlation_id: CorrelationId = None,
) -> ObjectiveView:
    reason = command.reason if command else None
    objective = await asyncio.to_thread(
        application.archive_objective, objective_id, reason, actor, correlation_id
    )
    return await scored_view(application, objective)


@router.post(
    "/{objective_id}/key-results/{key_result_id}/check-ins",
    status_code=status.HTTP_201_CREATED,
    response_model=ObjectiveView,
    responses=error_responses(404, 409, *BODY_ERRORS),
)
async def check_in(
    objective_id: UUID,
    key_result_id: str,
    command: CheckInCommand,
    application: Goal,
    actor: Actor,
    correlation_id: CorrelationId = None,
) -> ObjectiveView:
    objective = await asyncio.to_thread(
        application.check_in, objective_id, key_result_id, command, actor, correlation_id
    )
    return await scored_view(application, objective)


@router.get(
    "/{objective_id}/history",
    response_model=list[HistoryEntry],
    responses=error_responses(404),
)
async def history(objective_id: UUID, application: Goal) -> list[HistoryEntry]:
    """Every change of the objective, oldest first, as published on `goal.events`."""
    return history_entries(await asyncio.to_thread(application.history, objective_id))


def history_entries(domain_events: Sequence[Any]) -> list[HistoryEntry]:
    """Each stored change as published, with the field-level differences it made."""
    entries = []
    state: dict[str, Any] = {}  # the objective as of the previous event, for the diffs
    for domain_event in domain_events:
        event_class, payload = published_form(domain_event)
        fields = payload.model_dump(mode="json")
        if event_class is ObjectiveSet:
            after = fields | {"check_ins": state.get("check_ins", {})}
        elif event_class is ObjectiveArchived:
            after = state | {"status": "archived"}
        else:  # a check-in: the key result's latest check-in changes
            check_in = {
                k: v for k, v in fields.items() if k not in ("objective_id", "key_result_id")
            }
            after = state | {
                "check_ins": state.get("check_ins", {}) | {fields["key_result_id"]: check_in}
            }
        entries.append(
            HistoryEntry(
                version=domain_event.originator_version,
                event_type=event_class.model_fields["event_type"].default,
                occurred_at=domain_event.timestamp,
                actor=domain_event.actor,
                correlation_id=domain_event.correlation_id,
                payload=fields,
                changes=changes(state or None, after),
            )
        )
        state = after
    return entries
