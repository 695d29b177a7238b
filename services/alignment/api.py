"""The alignment service's HTTP JSON API: the scored cascade, scores with lineage, gaps."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from contracts import (
    Aggregation,
    GapKind,
    KeyResultDefinition,
    KeyResultKind,
    Level,
    ObjectiveStatus,
    ObjectiveType,
    PaceStatus,
)
from services.alignment.application import AlignmentApplication
from services.alignment.domain import ObjectiveTrack
from services.shared.http import JSONRoute, error_responses
from services.shared.http_parameters import AsOf
from services.shared.runtime import application_of

Alignment = Annotated[AlignmentApplication, Depends(application_of(AlignmentApplication))]

ISO_INSTANT = "ISO-8601 instant, as recorded."


# -- response models ----------------------------------------------------------------------------


class ReadingCitation(BaseModel):
    """A KPI reading as the metrics service recorded it on ``metrics.events``."""

    producer: Literal["metrics"]
    position: int = Field(description="Its position in the metrics service's log.")
    event_type: Literal["KPIRecorded"]
    reading_id: str
    observed_at: str = Field(description="When it was observed: ISO-8601 instant.")
    source: str | None = Field(
        default=None,
        description="The source system; absent for readings cited before sources were kept.",
        exclude_if=lambda source: source is None,
    )


class CheckInCitation(BaseModel):
    """A check-in on ``goal.events``."""

    producer: Literal["goal"]
    position: int = Field(description="Its position in the goal service's log.")
    event_type: Literal["KeyResultCheckedIn"]


#: One input that determined a score.
Citation = Annotated[ReadingCitation | CheckInCitation, Field(discriminator="event_type")]


class DefinitionCitation(BaseModel):
    """The objective definition (``ObjectiveSet``) in force, by its position in goal.events."""

    producer: Literal["goal"]
    position: int


class KeyResultSummary(BaseModel):
    """A key result's definition and its last evaluation (nulls until the first)."""

    id: str
    title: str
    kind: KeyResultKind
    kpi: str | None
    aggregation: Aggregation | None
    baseline: float | None
    target: float | None
    weight: float
    score: float | None
    progress: float | None = Field(description="Unclamped, from baseline (0) to target (1).")
    value: float | None
    expected: float | None = Field(description="The elapsed fraction of the period.")
    status: PaceStatus | None
    as_of: str | None = Field(description=ISO_INSTANT)
    confidence: int | None = Field(
        description="0 to 10, the latest confidence checked in (null before any)."
    )


class KeyResultScore(KeyResultSummary):
    lineage: list[Citation] = Field(
        description="What determined the last evaluation: readings or a check-in."
    )


class ObjectiveSummary(BaseModel):
    """An objective's definition and its last evaluation (nulls until the first)."""

    id: str
    title: str
    owner: str | None
    org_unit: str
    level: Level
    period: str = Field(description='The period\'s label, such as "2026-Q4".')
    type: ObjectiveType
    status: ObjectiveStatus
    weight: float
    parent_id: str | None
    parent_key_result_id: str | None
    definition: DefinitionCitation
    score: float | None
    pace: PaceStatus | None
    expected: float | None = Field(description="The elapsed fraction of the period.")
    final: bool = Field(description="Graded at the end of its period (or as of its archival).")
    success: bool | None = Field(description="The final grade's verdict, once final.")
    as_of: str | None = Field(description=ISO_INSTANT)


class ObjectiveScore(ObjectiveSummary):
    key_results: list[KeyResultScore]


class TreeNode(ObjectiveSummary):
    key_results: list[KeyResultSummary]
    children: list[TreeNode] = Field(description="The active objectives aligned to this one.")


class ScoreRecord(BaseModel):
    """One published evaluation of a key result (a ``KeyResultScored``)."""

    score: float
    progress: float
    value: float | None
    expected: float
    status: PaceStatus
    as_of: datetime
    lineage: list[Citation]
    definition: DefinitionCitation


class OpenGap(BaseModel):
    gap_id: str = Field(description="Stable: kind and subject.")
    kind: GapKind
    subject: str
    message: str
    owner: str | None
    period: str | None
    since: str = Field(description=f"When it opened: {ISO_INSTANT}")


# -- views of the tracks --------------------------------------------------------------------


def key_result_fields(track: ObjectiveTrack, key_result: KeyResultDefinition) -> dict[str, Any]:
    """A key result's definition and last evaluation, but its lineage."""
    evaluation = track.evaluations.get(key_result.id, {})
    return {
        "id": key_result.id,
        "title": key_result.title,
        "kind": key_result.kind,
        "kpi": key_result.kpi,
        "aggregation": key_result.aggregation,
        "baseline": key_result.baseline,
        "target": key_result.target,
        "weight": key_result.weight,
        **{
            name: evaluation.get(name)
            for name in ("score", "progress", "value", "expected", "status", "as_of")
        },
        "confidence": track.check_ins.get(key_result.id, {}).get("confidence"),
    }


def objective_fields(track: ObjectiveTrack) -> dict[str, Any]:
    """An objective's definition and last evaluation, but its key results."""
    definition = track.definition
    evaluation = track.evaluation or {}
    return {
        "id": definition.id,
        "title": definition.title,
        "owner": definition.owner,
        "org_unit": definition.org_unit,
        "level": definition.level,
        "period": definition.period.label,
        "type": definition.type,
        "status": definition.status,
        "weight": definition.weight,
        "parent_id": definition.parent_id,
        "parent_key_result_id": definition.parent_key_result_id,
        "definition": {"producer": "goal", "position": track.definition_position},
        "score": evaluation.get("score"),
        "pace": evaluation.get("status"),
        "expected": evaluation.get("expected"),
        "final": evaluation.get("final", False),
        "success": evaluation.get("success"),
        "as_of": evaluation.get("as_of"),
    }


def objective_view(track: ObjectiveTrack) -> ObjectiveScore:
    key_results = [
        key_result_fields(track, kr)
        | {"lineage": track.evaluations.get(kr.id, {}).get("lineage", [])}
        for kr in track.definition.key_results
    ]
    return ObjectiveScore.model_validate(objective_fields(track) | {"key_results": key_results})


def tree_node(track: ObjectiveTrack) -> TreeNode:
    """The objective without its lineage, and no children yet."""
    key_results = [key_result_fields(track, kr) for kr in track.definition.key_results]
    return TreeNode.model_validate(
        objective_fields(track) | {"key_results": key_results, "children": []}
    )


def build_tree(
    tracks: list[ObjectiveTrack], period: str | None, org_unit: str | None
) -> list[TreeNode]:
    """Active objectives nested under the objective they align to. A filtered-out parent
    leaves its matching children as roots, so a filter never hides a match."""
    chosen = {
        t.definition.id: tree_node(t)
        for t in tracks
        if t.active
        and (period is None or t.definition.period.label == period)
        and (org_unit is None or t.definition.org_unit == org_unit)
    }
    roots = []
    for node in sorted(chosen.values(), key=lambda n: (n.level is not Level.company, n.title)):
        parent = chosen.get(node.parent_id or "")
        if parent is None:
            roots.append(node)
        else:
            parent.children.append(node)
    return roots


# -- routes -------------------------------------------------------------------------------------

router = APIRouter(tags=["alignment"], route_class=JSONRoute)


@router.get("/tree")
async def tree(
    application: Alignment,
    period: str | None = None,
    org_unit: str | None = None,
    as_of: AsOf = None,
) -> list[TreeNode]:
    """The cascade of active objectives with scores, pace and each key result's score;
    with ``as_of``, as it was at that instant (replayed from the log up to then)."""
    if as_of is not None:
        tracks = await asyncio.to_thread(application.tracks_as_of, as_of)
    else:
        tracks = await asyncio.to_thread(application.tracks)
    return build_tree(tracks, period, org_unit)


@router.get("/objectives/{objective_id}/score", responses=error_responses(404))
async def objective_score(
    application: Alignment, objective_id: str, as_of: AsOf = None
) -> ObjectiveScore:
    """Objective score and pace, and per key result score, progress, value, pace and the
    lineage of its last evaluation (the readings or check-in that determined it)."""
    if as_of is not None:
        return objective_view(await asyncio.to_thread(application.track_as_of, objective_id, as_of))
    return objective_view(await asyncio.to_thread(application.track, objective_id))


@router.get("/key-results/{key_result_id}/scores", responses=error_responses(404))
async def key_result_scores(application: Alignment, key_result_id: str) -> list[ScoreRecord]:
    """Every published score of the key result, oldest first."""
    history = await asyncio.to_thread(application.key_result_history, key_result_id)
    return [
        ScoreRecord.model_validate(
            {
                "score": e.score,
                "progress": e.progress,
                "value": e.value,
                "expected": e.expected,
                "status": e.status,
                "as_of": e.as_of,
                "lineage": e.lineage,
                "definition": {"producer": "goal", "position": definition_position},
            }
        )
        for e, definition_position in history
    ]


@router.get("/gaps")
async def gaps(
    application: Alignment,
    kind: GapKind | None = None,
    owner: str | None = None,
    period: str | None = None,
    as_of: AsOf = None,
) -> list[OpenGap]:
    """Open gaps, oldest first (with ``as_of``: those open at that instant)."""
    if as_of is not None:
        found = await asyncio.to_thread(application.open_gaps_as_of, as_of)
    else:
        found = await asyncio.to_thread(application.open_gaps)
    return [
        OpenGap.model_validate(g)
        for g in sorted(found, key=lambda g: (g["since"], g["gap_id"]))
        if (kind is None or g["kind"] == kind.value)
        and (owner is None or g["owner"] == owner)
        and (period is None or g["period"] == period)
    ]
