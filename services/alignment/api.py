"""The alignment service's HTTP JSON API: the scored cascade, scores with lineage, gaps."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts import GapKind, PaceStatus
from services.alignment.application import AlignmentApplication
from services.alignment.domain import ObjectiveTrack
from services.shared.http import Instant, JSONRoute, error_responses

AsOf = Annotated[
    Instant | None,
    Query(description="An instant (ISO-8601 with timezone): answer as things were then."),
]


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
        "definition": {"producer": "goal", "position": track.definition_position},
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
    api = APIRouter(tags=["alignment"], route_class=JSONRoute)

    @api.get("/tree")
    async def tree(
        period: str | None = None, org_unit: str | None = None, as_of: AsOf = None
    ) -> list[dict[str, Any]]:
        """The cascade of active objectives with scores, pace and each key result's score;
        with ``as_of``, as it was at that instant (replayed from the log up to then)."""
        if as_of is not None:
            tracks = await asyncio.to_thread(application.tracks_as_of, as_of)
        else:
            tracks = await asyncio.to_thread(application.tracks)
        return build_tree(tracks, period, org_unit)

    @api.get("/objectives/{objective_id}/score", responses=error_responses(404))
    async def objective_score(objective_id: str, as_of: AsOf = None) -> dict[str, Any]:
        """Objective score and pace, and per key result score, progress, value, pace and the
        lineage of its last evaluation (the readings or check-in that determined it)."""
        if as_of is not None:
            return objective_view(
                await asyncio.to_thread(application.track_as_of, objective_id, as_of)
            )
        return objective_view(await asyncio.to_thread(application.track, objective_id))

    @api.get("/key-results/{key_result_id}/scores", responses=error_responses(404))
    async def key_result_scores(key_result_id: str) -> list[dict[str, Any]]:
        """Every published score of the key result, oldest first."""
        return await asyncio.to_thread(application.key_result_history, key_result_id)

    @api.get("/gaps")
    async def gaps(
        kind: GapKind | None = None,
        owner: str | None = None,
        period: str | None = None,
        as_of: AsOf = None,
    ) -> list[dict[str, Any]]:
        """Open gaps, oldest first (with ``as_of``: those open at that instant)."""
        if as_of is not None:
            found = await asyncio.to_thread(application.open_gaps_as_of, as_of)
        else:
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


class AlignmentCollector(Collector):
    """Business metrics computed at scrape time from the graph in memory (so the batch path
    pays nothing): objective and key result scores, pace statuses, open gaps. Objective and
    key result ids are labels: bounded by the active OKRs, which people define."""

    def __init__(self, application: AlignmentApplication) -> None:
        self._application = application

    def collect(self) -> Iterator[Metric]:
        objective_score = GaugeMetricFamily(
            "okr_objective_score",
            "Objective score, 0 to 1.",
            labels=["objective", "org_unit", "level", "period"],
        )
        objective_status = GaugeMetricFamily(
            "okr_objective_status",
            "1 for the objective's current pace status.",
            labels=["objective", "org_unit", "status"],
        )
        key_result_score = GaugeMetricFamily(
            "okr_key_result_score", "Key result score, 0 to 1.", labels=["objective", "key_result"]
        )
        by_status: Counter[tuple[str, str]] = Counter()
        for track in self._application.tracks():
            definition, evaluation = track.definition, track.evaluation
            if not track.active or evaluation is None:
                continue
            objective_score.add_metric(
                [
                    definition.id,
                    definition.org_unit,
                    definition.level.value,
                    definition.period.label,
                ],
                evaluation["score"],
            )
            for status in PaceStatus:
                objective_status.add_metric(
                    [definition.id, definition.org_unit, status.value],
                    1.0 if evaluation["status"] == status.value else 0.0,
                )
            by_status[(definition.org_unit, evaluation["status"])] += 1
            for key_result_id, key_result in track.evaluations.items():
                key_result_score.add_metric([definition.id, key_result_id], key_result["score"])
        objectives = GaugeMetricFamily(
            "okr_objectives", "Active objectives by pace status.", labels=["org_unit", "status"]
        )
        for (org_unit, pace_status), count in sorted(by_status.items()):
            objectives.add_metric([org_unit, pace_status], count)
        yield from (objective_score, objective_status, key_result_score, objectives)
        yield from self._gaps()

    def _gaps(self) -> Iterator[Metric]:
        open_gaps = GaugeMetricFamily("okr_gaps_open", "Open gaps by kind.", labels=["kind"])
        oldest = GaugeMetricFamily(
            "okr_gap_oldest_open_seconds", "Age of the oldest open gap of a kind.", labels=["kind"]
        )
        now = datetime.now(UTC)
        gaps = self._application.open_gaps()
        for kind in GapKind:
            mine = [datetime.fromisoformat(g["since"]) for g in gaps if g["kind"] == kind.value]
            open_gaps.add_metric([kind.value], len(mine))
            oldest.add_metric([kind.value], (now - min(mine)).total_seconds() if mine else 0.0)
        yield from (open_gaps, oldest)
