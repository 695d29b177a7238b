"""The alignment service's business metrics, computed at scrape time from the graph in memory
(so the batch path pays nothing): objective and key result scores, pace statuses, open gaps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts import GapKind, PaceStatus
from services.alignment.application import AlignmentApplication


class AlignmentCollector(Collector):
    """The business metrics, collected on each scrape. Objective and key result ids are
    labels: bounded by the active OKRs, which people define."""

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
