"""The alignment service's evaluation rules, as pure functions of the tracks' facts: which
readings count for an archived objective, the progress of each kind of key result (roll-ups
over their active children), what a score cites, and when and how an objective is graded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import (
    Aggregation,
    KeyResultDefinition,
    KeyResultKind,
    Level,
    ObjectiveDefinition,
    ObjectiveType,
    PaceStatus,
    parse_period,
)
from services.alignment import evaluation as rules
from services.alignment.domain import ObjectiveTrack
from services.alignment.evaluation import (
    Citable,
    check_in_citation,
    cite,
    counts_for,
    evaluate_key_result,
    evaluate_objective,
    graded_at,
    key_result_status_moved,
    lineage_of,
    measured_progress,
    objective_status_moved,
    reading_citation,
    recorded_in_time,
    rollup_progress,
)
from services.alignment.scoring import PaceThresholds, ReadingRef, WindowStats

YEAR = parse_period("2026")
Q1 = parse_period("2026-Q1")
#: Two months into 2026: about 16% of the year elapsed.
NOW = datetime(2026, 3, 2, tzinfo=UTC)
ARCHIVED = datetime(2026, 2, 1, 12, tzinfo=UTC)
PACE = PaceThresholds()

instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
)


def kr(key_result_id: str, kind: KeyResultKind, **fields: object) -> KeyResultDefinition:
    return KeyResultDefinition.model_validate(
        {"id": key_result_id, "title": "KR", "kind": kind} | fields
    )


def definition(
    objective_id: str,
    key_results: list[KeyResultDefinition],
    *,
    period: str = "2026",
    weight: float = 1.0,
    parent_key_result_id: str | None = None,
    type: ObjectiveType = ObjectiveType.committed,
) -> ObjectiveDefinition:
    return ObjectiveDefinition(
        id=objective_id,
        title=f"Objective {objective_id}",
        owner="ceo",
        org_unit="company",
        level=Level.team if parent_key_result_id else Level.company,
        period=parse_period(period),
        type=type,
        weight=weight,
        parent_id="obj-parent" if parent_key_result_id else None,
        parent_key_result_id=parent_key_result_id,
        key_results=key_results,
    )


def track(objective: ObjectiveDefinition, archived_at: datetime | None = None) -> ObjectiveTrack:
    made = ObjectiveTrack(objective.id, objective.model_dump(mode="json"), 1)
    if archived_at is not None:
        made.archive(2, archived_at)
    return made


def child(
    objective_id: str,
    score: float | None,
    weight: float = 1.0,
    aligned_to: str = "kr-teams",
    archived: bool = False,
) -> ObjectiveTrack:
    made = track(
        definition(
            objective_id,
            [kr(f"{objective_id}-kr", KeyResultKind.metric, baseline=0, target=10)],
            weight=weight,
            parent_key_result_id=aligned_to,
        ),
        ARCHIVED if archived else None,
    )
    if score is not None:
        made.record_objective(
            score=score,
            expected=0.5,
            status=PaceStatus.on_track,
            as_of=NOW,
            final=False,
            success=None,
        )
    return made


def reading(reading_id: str, value: float, observed_at: datetime, position: int) -> ReadingRef:
    return ReadingRef(reading_id, value, observed_at, position, "crm")


# -- which readings count -------------------------------------------------------------------


def test_every_reading_counts_while_the_objective_is_active() -> None:
    assert recorded_in_time(True, None, NOW, applied_before=False)
    assert recorded_in_time(True, ARCHIVED, NOW, applied_before=False)


@pytest.mark.parametrize(
    ("recorded_at", "applied_before", "counts"),
    [
        (ARCHIVED - timedelta(seconds=1), False, True),
        (ARCHIVED, True, True),  # at the very instant, and applied before the archival
        (ARCHIVED, False, False),  # at the very instant, but applied after it
        (ARCHIVED + timedelta(seconds=1), True, False),
    ],
)
def test_an_archived_objective_counts_the_readings_recorded_before_its_archival(
    recorded_at: datetime, applied_before: bool, counts: bool
) -> None:
    assert recorded_in_time(False, ARCHIVED, recorded_at, applied_before=applied_before) is counts


def test_an_objective_archived_before_archivals_were_dated_counts_no_more_readings() -> None:
    assert not recorded_in_time(False, None, ARCHIVED - timedelta(days=300), applied_before=True)


@settings(max_examples=200, deadline=None)
@given(archived_at=instants, recorded_at=instants, applied_before=st.booleans())
def test_whether_a_reading_counts_depends_on_the_order_of_arrival_only_at_the_instant(
    archived_at: datetime, recorded_at: datetime, applied_before: bool
) -> None:
    """Readings and archivals arrive on two topics in either order: only a reading recorded
    at the archival's very instant may depend on which came first."""
    counts = recorded_in_time(False, archived_at, recorded_at, applied_before=applied_before)
    if recorded_at != archived_at:
        assert counts is (recorded_at < archived_at)
        assert counts is recorded_in_time(
            False, archived_at, recorded_at, applied_before=not applied_before
        )


def test_a_reading_counts_for_a_key_result_when_observed_in_the_period_and_recorded_in_time() -> (
    None
):
    quarter = track(
        definition(
            "obj-q1", [kr("kr", KeyResultKind.metric, baseline=0, target=1)], period="2026-Q1"
        )
    )
    assert counts_for(quarter, datetime(2026, 3, 31, 23, tzinfo=UTC), NOW, applied_before=False)
    assert not counts_for(quarter, datetime(2026, 4, 1, tzinfo=UTC), NOW, applied_before=False)
    archived = track(quarter.definition, ARCHIVED)
    in_period = datetime(2026, 1, 15, tzinfo=UTC)
    assert counts_for(archived, in_period, ARCHIVED - timedelta(hours=1), applied_before=False)
    assert not counts_for(archived, in_period, ARCHIVED + timedelta(hours=1), applied_before=True)


# -- key results ----------------------------------------------------------------------------


def test_a_rollup_is_the_weighted_mean_of_its_active_aligned_children() -> None:
    children = [
        child("obj-a", 0.4, weight=1),
        child("obj-b", 0.8, weight=3),
        child("obj-c", 1.0, weight=5, archived=True),  # archived: no longer counts
        child("obj-d", 1.0, weight=5, aligned_to="kr-other"),  # rolls up elsewhere
    ]
    assert rollup_progress("kr-teams", children) == pytest.approx((0.4 * 1 + 0.8 * 3) / 4)


def test_a_child_not_scored_yet_counts_as_0_and_a_rollup_without_children_is_0() -> None:
    assert rollup_progress("kr-teams", [child("obj-a", None), child("obj-b", 1.0)]) == 0.5
    assert rollup_progress("kr-teams", []) == 0.0
    assert rollup_progress("kr-teams", [child("obj-a", 1.0, weight=0)]) == 0.0


@settings(max_examples=100, deadline=None)
@given(
    scores=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1),
            st.floats(min_value=0, max_value=100),
            st.booleans(),
        ),
        max_size=8,
    ),
    data=st.data(),
)
def test_a_rollup_is_within_0_and_1_whatever_the_order_of_its_children(
    scores: list[tuple[float, float, bool]], data: st.DataObject
) -> None:
    children = [
        child(f"obj-{n}", score, weight, archived=archived)
        for n, (score, weight, archived) in enumerate(scores)
    ]
    rolled = rollup_progress("kr-teams", children)
    assert 0.0 <= rolled <= 1.0
    assert rollup_progress("kr-teams", data.draw(st.permutations(children))) == rolled


def test_a_milestone_progresses_by_its_checklist_or_when_done() -> None:
    checklist = kr("kr-launch", KeyResultKind.milestone, checklist=["design", "pilot", "launch"])
    assert measured_progress(checklist, {"checklist_done": ["design"]}, None) == (1 / 3, 1 / 3)
    done = kr("kr-done", KeyResultKind.milestone)
    assert measured_progress(done, {"done": True}, None) == (1.0, 1.0)
    assert measured_progress(done, {}, None) == (0.0, 0.0)


def test_a_metric_progresses_from_its_check_in_and_lower_can_be_better() -> None:
    churn = kr("kr-churn", KeyResultKind.metric, baseline=8, target=5)
    assert measured_progress(churn, {"value": 6.5}, None) == (6.5, 0.5)
    assert measured_progress(churn, {}, None) == (None, 0.0)
    assert measured_progress(churn, {"value": None, "confidence": 7}, None) == (None, 0.0)


def test_a_kpi_key_result_progresses_by_the_aggregate_of_its_readings() -> None:
    customers = kr(
        "kr-customers",
        KeyResultKind.kpi,
        kpi="new_customers",
        aggregation=Aggregation.sum,
        baseline=0,
        target=300,
    )
    stats = WindowStats()
    assert measured_progress(customers, {}, stats) == (None, 0.0)
    for n, value in enumerate((40.0, 20.0, 30.0)):
        stats.add(reading(f"r{n}", value, NOW - timedelta(days=n), n))
    assert measured_progress(customers, {}, stats) == (90.0, 0.3)


def test_latest_min_and_max_cite_the_one_reading_that_gives_the_value() -> None:
    stats = WindowStats()
    low, high = reading("r1", 3.0, NOW, 5), reading("r2", 9.0, NOW - timedelta(days=1), 6)
    stats.add(low)
    stats.add(high)
    cited = [reading_citation(low), reading_citation(high)]
    for aggregation, determining in (
        (Aggregation.latest, low),
        (Aggregation.min, low),
        (Aggregation.max, high),
    ):
        key_result = kr(
            "kr", KeyResultKind.kpi, kpi="k", aggregation=aggregation, baseline=0, target=10
        )
        assert lineage_of(key_result, stats, cited) == [reading_citation(determining)]


def test_sums_cite_what_the_evaluation_folded_in_and_check_ins_their_position() -> None:
    total = kr("kr", KeyResultKind.kpi, kpi="k", aggregation=Aggregation.sum, baseline=0, target=10)
    stats = WindowStats()
    cited: list[Citable] = []
    for n in range(3):
        stats.add(reading(f"r{n}", 1.0, NOW, n + 1))
        cite(cited, [reading(f"r{n}", 1.0, NOW, n + 1)])
    lineage = lineage_of(total, stats, cited)
    assert [c["reading_id"] for c in lineage] == ["r0", "r1", "r2"]
    assert lineage[0] == {
        "producer": "metrics",
        "position": 1,
        "event_type": "KPIRecorded",
        "reading_id": "r0",
        "observed_at": NOW.isoformat(),
        "source": "crm",
    }
    metric = kr("kr-nps", KeyResultKind.metric, baseline=30, target=45)
    assert lineage_of(metric, None, [check_in_citation(12)]) == [
        {"producer": "goal", "position": 12, "event_type": "KeyResultCheckedIn"}
    ]


def test_at_most_max_lineage_readings_are_cited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "MAX_LINEAGE", 2)
    cited: list[Citable] = []
    cite(cited, [reading(f"r{n}", 1.0, NOW, n + 1) for n in range(3)])
    cite(cited, [reading(f"r{n}", 1.0, NOW, n + 1) for n in range(3, 5)])
    total = kr("kr", KeyResultKind.kpi, kpi="k", aggregation=Aggregation.sum, baseline=0, target=10)
    assert [c["reading_id"] for c in lineage_of(total, None, cited)] == ["r0", "r1"]
    check_ins = [check_in_citation(n) for n in range(1, 5)]
    metric = kr("kr-nps", KeyResultKind.metric, baseline=30, target=45)
    assert lineage_of(metric, None, check_ins) == check_ins[:2]


def test_a_key_result_evaluation_clamps_its_score_and_paces_its_progress() -> None:
    ahead = evaluate_key_result(YEAR, 50.0, 4 / 3, [], NOW, PACE)
    assert (ahead.score, ahead.progress, ahead.status) == (1.0, 4 / 3, PaceStatus.achieved)
    behind = evaluate_key_result(YEAR, 8.3, -0.1, [], NOW, PACE)
    assert (behind.score, behind.status) == (0.0, PaceStatus.at_risk)
    assert behind.expected == pytest.approx(
        (NOW - datetime(2026, 1, 1, tzinfo=UTC)) / timedelta(days=365)
    )
    assert behind.as_of == NOW


def test_time_alone_moves_a_key_results_status() -> None:
    evaluation = {"progress": 0.2, "status": "on_track"}
    assert not key_result_status_moved(evaluation, YEAR, NOW, PACE)
    assert key_result_status_moved(evaluation, YEAR, datetime(2026, 7, 1, tzinfo=UTC), PACE)
    assert not key_result_status_moved(None, YEAR, NOW, PACE)


# -- objectives -----------------------------------------------------------------------------


def test_an_objective_is_graded_now_while_active_and_as_of_its_archival_once_archived() -> None:
    assert graded_at(True, None, NOW) == NOW
    assert graded_at(False, ARCHIVED, NOW) == ARCHIVED
    assert graded_at(False, NOW + timedelta(days=1), NOW) == NOW
    assert graded_at(False, None, NOW) is None  # archived before archivals were dated


@settings(max_examples=200, deadline=None)
@given(active=st.booleans(), archived_at=st.none() | instants, now=instants)
def test_an_objective_is_never_graded_after_now_nor_after_its_archival(
    active: bool, archived_at: datetime | None, now: datetime
) -> None:
    at = graded_at(active, archived_at, now)
    if at is not None:
        assert at <= now
        assert active or (archived_at is not None and at <= archived_at)


def scored(*scores: float) -> dict[str, dict[str, float]]:
    return {f"kr-{n}": {"score": score} for n, score in enumerate(scores)}


def objective_of(weights: list[float], **fields: object) -> ObjectiveDefinition:
    key_results = [
        kr(f"kr-{n}", KeyResultKind.metric, baseline=0, target=1, weight=weight)
        for n, weight in enumerate(weights)
    ]
    return definition("obj", key_results, **fields)  # type: ignore[arg-type]


def test_an_objective_scores_the_weighted_mean_of_its_key_results() -> None:
    evaluation = evaluate_objective(objective_of([2, 1]), scored(0.5, 0.8), NOW, PACE)
    assert evaluation.score == pytest.approx((0.5 * 2 + 0.8) / 3)
    assert (evaluation.final, evaluation.success, evaluation.as_of) == (False, None, NOW)
    # A key result not evaluated yet counts as 0.
    assert evaluate_objective(objective_of([1, 1]), scored(0.5), NOW, PACE).score == 0.25


@pytest.mark.parametrize(
    ("type", "score", "success"),
    [
        (ObjectiveType.aspirational, 0.7, True),
        (ObjectiveType.aspirational, 0.69, False),
        (ObjectiveType.committed, 0.99, False),
        (ObjectiveType.committed, 1.0, True),
    ],
)
def test_the_final_grade_comes_at_the_end_of_the_period(
    type: ObjectiveType, score: float, success: bool
) -> None:
    objective = objective_of([1], period="2026-Q1", type=type)
    before = evaluate_objective(
        objective, scored(score), datetime(2026, 3, 31, 23, tzinfo=UTC), PACE
    )
    assert (before.final, before.success) == (False, None)
    end = datetime(2026, 4, 1, tzinfo=UTC)
    graded = evaluate_objective(objective, scored(score), end, PACE)
    assert (graded.final, graded.success, graded.expected) == (True, success, 1.0)


def test_time_alone_moves_an_objectives_status_and_closes_its_period() -> None:
    evaluation = {"score": 0.2, "status": "on_track", "final": False}
    assert not objective_status_moved(evaluation, Q1, datetime(2026, 1, 20, tzinfo=UTC), PACE)
    assert objective_status_moved(evaluation, Q1, datetime(2026, 3, 20, tzinfo=UTC), PACE)
    graded = {"score": 1.0, "status": "achieved", "final": False}
    assert objective_status_moved(graded, Q1, datetime(2026, 4, 1, tzinfo=UTC), PACE)
    assert not objective_status_moved(
        graded | {"final": True}, Q1, datetime(2026, 5, 1, tzinfo=UTC), PACE
    )
    assert not objective_status_moved(None, Q1, NOW, PACE)
