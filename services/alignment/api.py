"""The alignment service's HTTP JSON API: the scored cascade, scores with lineage, gaps."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from contracts import GapKind
from services.alignment.application import AlignmentApplication
from services.alignment.domain import ObjectiveTrack


def key_result_view(track: ObjectiveTrack) -> list[dict[str, Any]]:
    return [
        {
            "id": kr.id,
            "title": kr.title,
            "kind": kr.kind.value,
            "kpi": kr.kpi,
            "aggregation": kr.aggregation.value if kr.aggregation else None,
            "baseline": kr.baseline,
            "target": kr.target,
            "weight": kr.weight,
            **{
                name: track.evaluations.get(kr.id, {}).get(name)
                for name in ("score", "progress", "value", "expected", "status", "as_of")
            },
            "lineage": track.evaluations.get(kr.id, {}).get("lineage", []),
        }
        for kr in track.definition.key_results
    ]


def objective_view(track: ObjectiveTrack, with_lineage: bool = True) -> dict[str, Any]:
    definition = track.definition
    evaluation = track.evaluation or {}
    key_results = key_result_view(track)
    if not with_lineage:
        for key_result in key_results:
            key_result.pop("lineage")
    return {
        "id": definition.id,
        "title": definition.title,
        "owner": definition.owner,
        "org_unit": definition.org_unit,
        "level": definition.level.value,
        "period": definition.period.label,
        "type": definition.type.value,
        "status": definition.status.value,
        "weight": definition.weight,
        "parent_id": definition.parent_id,
        "parent_key_result_id": definition.parent_key_result_id,
        "score": evaluation.get("score"),
        "pace": evaluation.get("status"),
        "expected": evaluation.get("expected"),
        "final": evaluation.get("final", False),
        "success": evaluation.get("success"),
        "as_of": evaluation.get("as_of"),
        "key_results": key_results,
    }


def build_tree(
    tracks: list[ObjectiveTrack], period: str | None, org_unit: str | None
) -> list[dict[str, Any]]:
    """Active objectives nested under the objective they align to. A filtered-out parent
    leaves its matching children as roots, so a filter never hides a match."""
    chosen = {
        t.definition.id: objective_view(t, with_lineage=False)
        for t in tracks
        if t.active
        and (period is None or t.definition.period.label == period)
        and (org_unit is None or t.definition.org_unit == org_unit)
    }
    roots = []
    for node in sorted(chosen.values(), key=lambda n: (n["level"] != "company", n["title"])):
        node.setdefault("children", [])
        parent = chosen.get(node["parent_id"] or "")
        if parent is None:
            roots.append(node)
        else:
            parent.setdefault("children", []).append(node)
    return roots


def router(application: AlignmentApplication) -> APIRouter:
    api = APIRouter(tags=["alignment"])

    @api.get("/tree")
    async def tree(period: str | None = None, org_unit: str | None = None) -> list[dict[str, Any]]:
        """The cascade of active objectives with scores, pace and each key result's score."""
        tracks = await asyncio.to_thread(application.tracks)
        return build_tree(tracks, period, org_unit)

    @api.get("/objectives/{objective_id}/score")
    async def objective_score(objective_id: str) -> dict[str, Any]:
        """Objective score and pace, and per key result score, progress, value, pace and the
        lineage of its last evaluation (the readings or check-in that determined it)."""
        return objective_view(await asyncio.to_thread(application.track, objective_id))

    @api.get("/key-results/{key_result_id}/scores")
    async def key_result_scores(key_result_id: str) -> list[dict[str, Any]]:
        """Every published score of the key result, oldest first."""
        return await asyncio.to_thread(application.key_result_history, key_result_id)

    @api.get("/gaps")
    async def gaps(
        kind: GapKind | None = None, owner: str | None = None, period: str | None = None
    ) -> list[dict[str, Any]]:
        """Open gaps, oldest first."""
        found = await asyncio.to_thread(application.open_gaps)
        return sorted(
            (
                g
                for g in found
                if (kind is None or g["kind"] == kind.value)
                and (owner is None or g["owner"] == owner)
                and (period is None or g["period"] == period)
            ),
            key=lambda g: (g["since"], g["gap_id"]),
        )

    return api
