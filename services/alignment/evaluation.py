"""How the alignment service evaluates key results and objectives, as pure functions of the
tracks' facts and an instant (no I/O): which readings count for an objective, the value and
progress of each kind of key result, what a score cites, and when and how an objective is
graded. The arithmetic underneath is in ``scoring``; the policy decides what to evaluate."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import (
    Aggregation,
    KeyResultDefinition,
    KeyResultKind,
    ObjectiveDefinition,
    PaceStatus,
    Period,
)
from services.alignment.domain import ObjectiveTrack
from services.alignment.scoring import (
    PaceThresholds,
    ReadingRef,
    WindowStats,
    clamp,
    expected_fraction,
    in_window,
    milestone_progress,
    pace,
    period_bounds,
    progress,
    succeeded,
    weighted_mean,
)

#: Lineage of a sum, average or count cites the readings folded in by that evaluation, at most
#: this many: a backfill folds a key result's whole history in one evaluation, and the scores
#: that carry the citations are parsed by the goal service. Every reading stays in
#: ``metrics.events`` and in the metrics service's API.
MAX_LINEAGE = 100


@dataclass(frozen=True, slots=True)
class KeyResultEvaluation:
    value: float | None
    progress: float
    score: float
    expected: float
    status: PaceStatus
    as_of: datetime
    lineage: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ObjectiveEvaluation:
    score: float
    expected: float
    status: PaceStatus
    as_of: datetime
    final: bool
    success: bool | None


# -- which readings count -------------------------------------------------------------------


def recorded_in_time(
    active: bool, archived_at: datetime | None, recorded_at: datetime, *, applied_before: bool
) -> bool:
    """Whether a reading the metrics service recorded at ``recorded_at`` counts for an
    objective: always while it is active; once archived, if recorded before the archival.
    Readings and archivals come on two topics, in either order: judged by when they happened,
    an archived objective's scores are the same whatever the order of arrival (a reading
    recorded at the very instant counts if it was applied first)."""
    if active:
        return True
    if archived_at is None:  # archived before archivals were dated: frozen as it was
        return False
    return recorded_at < archived_at or (applied_before and recorded_at == archived_at)


def counts_for(
    track: ObjectiveTrack, observed_at: datetime, recorded_at: datetime, *, applied_before: bool
) -> bool:
    """Whether a reading counts for the objective's kpi key results: observed in its period,
    and recorded in time (``recorded_in_time``)."""
    period = track.definition.period
    return in_window(observed_at, period.start, period.end) and recorded_in_time(
        track.active, track.archived_at, recorded_at, applied_before=applied_before
    )


# -- key results ----------------------------------------------------------------------------


def rollup_progress(key_result_id: str, children: Iterable[ObjectiveTrack]) -> float:
    """A roll-up's progress: the weighted mean of the scores of the active child objectives
    aligned to it (an archived child no longer counts); 0 without any."""
    mean = weighted_mean(
        ((child.evaluation or {}).get("score", 0.0), child.definition.weight)
        for child in children
        if child.definition.parent_key_result_id == key_result_id and child.active
    )
    return mean if mean is not None else 0.0


def measured_progress(
    key_result: KeyResultDefinition, check_in: Mapping[str, Any], stats: WindowStats | None
) -> tuple[float | None, float]:
    """Value and unclamped progress of a metric, kpi or milestone key result: a milestone's
    value is its progress; the others go from baseline to target (0 without a value)."""
    if key_result.kind is KeyResultKind.milestone:
        fraction = milestone_progress(
            check_in.get("done"), key_result.checklist, check_in.get("checklist_done")
        )
        return fraction, fraction
    if key_result.kind is KeyResultKind.kpi:
        assert stats is not None
        value = stats.value(key_result.aggregation or Aggregation.latest)
    else:
        value = check_in.get("value")
    assert key_result.baseline is not None
    assert key_result.target is not None
    if value is None:
        return None, 0.0
    return value, progress(value, key_result.baseline, key_result.target)


def reading_citation(reference: ReadingRef) -> dict[str, Any]:
    return {
        "producer": "metrics",
        "position": reference.position,
        "event_type": "KPIRecorded",
        "reading_id": reference.reading_id,
        "observed_at": reference.observed_at.isoformat(),
        "source": reference.source,
    }


def check_in_citation(position: int) -> dict[str, Any]:
    return {"producer": "goal", "position": position, "event_type": "KeyResultCheckedIn"}


#: What a key result's next evaluation may cite: a reading, made a citation only if the
#: evaluation cites it (latest, min and max cite only the reading that gives the value), or a
#: check-in's citation.
Citable = ReadingRef | dict[str, Any]


def cite(cited: list[Citable], references: Iterable[ReadingRef]) -> None:
    """Cite readings in the lineage of a key result's next evaluation. Only the first
    ``MAX_LINEAGE`` are ever cited, so no more are kept: a rebuild backfills every key
    result at once, each over its whole history."""
    room = MAX_LINEAGE - len(cited)
    if room > 0:
        cited.extend(itertools.islice(references, room))


def lineage_of(
    key_result: KeyResultDefinition, stats: WindowStats | None, cited: Sequence[Citable]
) -> list[dict[str, Any]]:
    """What an evaluation cites: for latest, min and max the one reading that gives the
    value; otherwise what this evaluation folded in (readings, check-ins), the first
    ``MAX_LINEAGE``."""
    if stats is not None:
        determining = stats.determining(key_result.aggregation or Aggregation.latest)
        if determining is not None:
            return [reading_citation(determining)]
    return [
        reading_citation(item) if isinstance(item, ReadingRef) else item
        for item in cited[:MAX_LINEAGE]
    ]


def evaluate_key_result(
    period: Period,
    value: float | None,
    fraction: float,
    lineage: list[dict[str, Any]],
    now: datetime,
    thresholds: PaceThresholds,
) -> KeyResultEvaluation:
    expected = expected_fraction(period.start, period.end, now)
    return KeyResultEvaluation(
        value=value,
        progress=fraction,
        score=clamp(fraction),
        expected=expected,
        status=pace(fraction, expected, thresholds),
        as_of=now,
        lineage=lineage,
    )


def key_result_status_moved(
    evaluation: Mapping[str, Any] | None, period: Period, now: datetime, thresholds: PaceThresholds
) -> bool:
    """Whether time alone moved a key result's status: pace follows the elapsed part of the
    period."""
    if evaluation is None:
        return False
    expected = expected_fraction(period.start, period.end, now)
    return bool(evaluation["status"] != pace(evaluation["progress"], expected, thresholds).value)


# -- objectives -----------------------------------------------------------------------------


def graded_at(active: bool, archived_at: datetime | None, now: datetime) -> datetime | None:
    """The instant an objective is evaluated as of: now while active; once archived, as of
    its archival, so that one archived before its period ended gets no final grade later.
    None for one archived before archivals were dated: it stays as it was."""
    if active:
        return now
    if archived_at is None:
        return None
    return min(now, archived_at)


def evaluate_objective(
    definition: ObjectiveDefinition,
    key_results: Mapping[str, Mapping[str, Any]],
    at: datetime,
    thresholds: PaceThresholds,
) -> ObjectiveEvaluation:
    """The weighted mean of the key results' last scores (0 for one not evaluated yet), its
    pace, and from the end of the period the final grade."""
    score = (
        weighted_mean(
            (key_results.get(kr.id, {}).get("score", 0.0), kr.weight)
            for kr in definition.key_results
        )
        or 0.0
    )
    expected = expected_fraction(definition.period.start, definition.period.end, at)
    _, ends = period_bounds(definition.period.start, definition.period.end)
    final = at >= ends
    return ObjectiveEvaluation(
        score=score,
        expected=expected,
        status=pace(score, expected, thresholds),
        as_of=at,
        final=final,
        success=succeeded(score, definition.type) if final else None,
    )


def objective_status_moved(
    evaluation: Mapping[str, Any] | None, period: Period, now: datetime, thresholds: PaceThresholds
) -> bool:
    """Whether time alone moved an objective's status, or closed its period (a final grade
    is due)."""
    if evaluation is None:
        return False
    _, ends = period_bounds(period.start, period.end)
    expected = expected_fraction(period.start, period.end, now)
    status = pace(evaluation["score"], expected, thresholds)
    return bool(status.value != evaluation["status"] or (now >= ends) != evaluation["final"])
