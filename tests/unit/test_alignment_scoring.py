"""The alignment service's scoring rules (docs/architecture.md, "Scoring"), as pure functions:
progress and score in both directions, pace, weighted means, success at period close,
milestones, and the incremental fold of a KPI's readings in a key result's window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from contracts import Aggregation, ObjectiveType, PaceStatus, parse_period
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

Q3 = parse_period("2026-Q3")
Q4 = parse_period("2026-Q4")
AGGREGATIONS = list(Aggregation)
DETERMINED = (Aggregation.latest, Aggregation.min, Aggregation.max)

magnitudes = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


def score(value: float, baseline: float, target: float) -> float:
    return clamp(progress(value, baseline, target))


# -- progress and score: the examples -----------------------------------------------


def test_kr_from_10_to_40_at_25_scores_half() -> None:
    assert progress(25, 10, 40) == 0.5
    assert score(25, 10, 40) == 0.5


def test_lower_is_better_kr_from_8_down_to_5_at_6_5_scores_half() -> None:
    """ "Reduce churn from 8% to 5%": progress grows as the value falls."""
    assert progress(6.5, 8, 5) == 0.5
    assert score(6.5, 8, 5) == 0.5
    assert progress(7, 8, 5) < progress(6, 8, 5)


@pytest.mark.parametrize(
    ("value", "baseline", "target", "unclamped", "expected"),
    [
        (50.0, 10.0, 40.0, 4 / 3, 1.0),  # beyond target
        (40.0, 10.0, 40.0, 1.0, 1.0),  # at target
        (10.0, 10.0, 40.0, 0.0, 0.0),  # at baseline
        (0.0, 10.0, 40.0, -1 / 3, 0.0),  # behind baseline
        (4.0, 8.0, 5.0, 4 / 3, 1.0),  # lower is better, beyond target
        (9.5, 8.0, 5.0, -0.5, 0.0),  # lower is better, behind baseline
    ],
)
def test_progress_is_unclamped_and_score_is_clamped(
    value: float, baseline: float, target: float, unclamped: float, expected: float
) -> None:
    assert progress(value, baseline, target) == pytest.approx(unclamped)
    assert score(value, baseline, target) == expected


@pytest.mark.parametrize(
    ("fraction", "expected"), [(-3.0, 0.0), (0.0, 0.0), (0.25, 0.25), (1.0, 1.0), (7.5, 1.0)]
)
def test_clamp(fraction: float, expected: float) -> None:
    assert clamp(fraction) == expected


@settings(max_examples=150, deadline=None)
@given(value=magnitudes, baseline=magnitudes, target=magnitudes)
def test_score_is_always_between_0_and_1(value: float, baseline: float, target: float) -> None:
    assume(abs(target - baseline) >= 1e-6)
    assert 0.0 <= score(value, baseline, target) <= 1.0


@settings(max_examples=150, deadline=None)
@given(baseline=magnitudes, target=magnitudes)
def test_baseline_scores_0_and_target_scores_1(baseline: float, target: float) -> None:
    assume(abs(target - baseline) >= 1e-6)
    assert progress(baseline, baseline, target) == 0.0
    assert progress(target, baseline, target) == 1.0


@settings(max_examples=150, deadline=None)
@given(a=magnitudes, b=magnitudes, baseline=magnitudes, target=magnitudes)
def test_progress_is_monotonic_in_the_targets_direction(
    a: float, b: float, baseline: float, target: float
) -> None:
    assume(abs(target - baseline) >= 1e-6)
    low, high = min(a, b), max(a, b)
    if target > baseline:  # higher is better: a higher value never scores less
        assert progress(low, baseline, target) <= progress(high, baseline, target)
        assert score(low, baseline, target) <= score(high, baseline, target)
    else:  # lower is better: a lower value never scores less
        assert progress(low, baseline, target) >= progress(high, baseline, target)
        assert score(low, baseline, target) >= score(high, baseline, target)


# -- milestones, weighted means, success at period close ------------------------------------


def test_milestone_checklist_two_of_four_done_is_half() -> None:
    checklist = ["hire trainer", "write curriculum", "run pilot", "roll out"]
    assert milestone_progress(None, checklist, ["hire trainer", "run pilot"]) == 0.5


def test_milestone_checklist_ignores_unknown_items() -> None:
    checklist = ["hire trainer", "write curriculum", "run pilot", "roll out"]
    done = ["hire trainer", "run pilot", "buy a boat", "learn to sail"]
    assert milestone_progress(None, checklist, done) == 0.5
    assert milestone_progress(None, checklist, ["buy a boat"]) == 0.0
    assert milestone_progress(None, checklist, [*checklist, "extra"]) == 1.0


@pytest.mark.parametrize(("done", "expected"), [(True, 1.0), (False, 0.0), (None, 0.0)])
def test_milestone_without_checklist_is_done_or_not(done: bool | None, expected: float) -> None:
    assert milestone_progress(done, [], None) == expected


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([(1.0, 1.0), (0.5, 1.0)], 0.75),
        ([(1.0, 3.0), (0.0, 1.0)], 0.75),
        ([(0.4, 2.0)], 0.4),
        ([(1.0, 1.0), (0.0, 0.0)], 1.0),  # a weight of 0 does not count
        ([(0.2, 1.0), (0.8, 1.0), (0.5, 2.0)], 0.5),
    ],
)
def test_weighted_mean(pairs: list[tuple[float, float]], expected: float) -> None:
    assert weighted_mean(pairs) == pytest.approx(expected)


@pytest.mark.parametrize("pairs", [[], [(1.0, 0.0)], [(0.5, 0.0), (1.0, 0.0)]])
def test_weighted_mean_without_weight_is_none(pairs: list[tuple[float, float]]) -> None:
    assert weighted_mean(pairs) is None


def test_weighted_mean_accepts_any_iterable() -> None:
    assert weighted_mean(pair for pair in [(1.0, 1.0), (0.0, 1.0)]) == 0.5


@pytest.mark.parametrize(
    ("final", "objective_type", "success"),
    [
        (0.69, ObjectiveType.aspirational, False),
        (0.7, ObjectiveType.aspirational, True),
        (0.99, ObjectiveType.aspirational, True),
        (1.0, ObjectiveType.aspirational, True),
        (0.69, ObjectiveType.committed, False),
        (0.7, ObjectiveType.committed, False),
        (0.99, ObjectiveType.committed, False),
        (1.0, ObjectiveType.committed, True),
    ],
)
def test_succeeded(final: float, objective_type: ObjectiveType, success: bool) -> None:
    assert succeeded(final, objective_type) is success


# -- periods, expected fraction, pace --------------------------------------------------------


def test_period_bounds_cover_both_dates_in_utc() -> None:
    assert period_bounds(Q4.start, Q4.end) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


def test_expected_fraction_is_0_before_and_at_the_start() -> None:
    assert expected_fraction(Q4.start, Q4.end, datetime(2026, 9, 15, tzinfo=UTC)) == 0.0
    assert expected_fraction(Q4.start, Q4.end, datetime(2026, 10, 1, tzinfo=UTC)) == 0.0


def test_expected_fraction_is_1_at_and_after_the_end() -> None:
    # the last day counts in full: on Dec 31 at noon the quarter is not over yet
    assert expected_fraction(Q4.start, Q4.end, datetime(2026, 12, 31, 12, tzinfo=UTC)) < 1.0
    assert expected_fraction(Q4.start, Q4.end, datetime(2027, 1, 1, tzinfo=UTC)) == 1.0
    assert expected_fraction(Q4.start, Q4.end, datetime(2027, 3, 1, tzinfo=UTC)) == 1.0


@pytest.mark.parametrize(
    ("label", "middle"),
    [
        ("2026-Q4", datetime(2026, 11, 16, tzinfo=UTC)),  # 92 days: day 46 at midnight
        ("2026-01", datetime(2026, 1, 16, 12, tzinfo=UTC)),  # 31 days: day 15.5
        ("2026-02", datetime(2026, 2, 15, tzinfo=UTC)),  # 28 days
        ("2026", datetime(2026, 7, 2, 12, tzinfo=UTC)),  # 365 days
    ],
)
def test_expected_fraction_is_half_at_the_middle_instant(label: str, middle: datetime) -> None:
    period = parse_period(label)
    assert expected_fraction(period.start, period.end, middle) == 0.5


def test_expected_fraction_uses_the_instant_not_the_wall_clock() -> None:
    """Nov 16 00:00 UTC written in UTC+2 is the same middle instant."""
    plus_two = timezone(timedelta(hours=2))
    assert expected_fraction(Q4.start, Q4.end, datetime(2026, 11, 16, 2, tzinfo=plus_two)) == 0.5


instants = st.datetimes(
    min_value=datetime(2026, 8, 1), max_value=datetime(2027, 2, 28), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(a=instants, b=instants)
def test_expected_fraction_is_monotonic_in_time(a: datetime, b: datetime) -> None:
    early, late = min(a, b), max(a, b)
    first = expected_fraction(Q4.start, Q4.end, early)
    second = expected_fraction(Q4.start, Q4.end, late)
    assert 0.0 <= first <= second <= 1.0


@pytest.mark.parametrize(
    ("fraction", "expected", "status"),
    [
        (1.0, 0.0, PaceStatus.achieved),
        (1.0, 1.0, PaceStatus.achieved),
        (1.3, 0.5, PaceStatus.achieved),  # beyond target: unclamped progress
        (0.5, 0.5, PaceStatus.on_track),
        (0.9, 0.2, PaceStatus.on_track),  # ahead of time
        (0.0, 0.2, PaceStatus.on_track),  # exactly 0.2 behind
        (0.3, 0.5, PaceStatus.on_track),  # exactly 0.2 behind
        (0.0, 0.2000001, PaceStatus.at_risk),  # just over 0.2 behind
        (0.0, 0.4, PaceStatus.at_risk),  # exactly 0.4 behind
        (0.5, 0.9, PaceStatus.at_risk),  # exactly 0.4 behind
        (0.0, 0.4000001, PaceStatus.off_track),  # just over 0.4 behind
        (0.5, 1.0, PaceStatus.off_track),
        (-0.5, 0.0, PaceStatus.off_track),  # behind baseline at the start
    ],
)
def test_pace_thresholds(fraction: float, expected: float, status: PaceStatus) -> None:
    assert pace(fraction, expected) is status


def test_pace_boundaries_are_exact_in_floating_point() -> None:
    """The parametrized boundary cases above really sit on the thresholds."""
    assert 0.3 - 0.5 == -0.2
    assert 0.0 - 0.4 == -0.4
    assert 0.5 - 0.9 == -0.4


def test_pace_thresholds_are_configuration() -> None:
    strict = PaceThresholds(on_track=-0.1, at_risk=-0.2)
    assert pace(0.35, 0.5) is PaceStatus.on_track
    assert pace(0.35, 0.5, strict) is PaceStatus.at_risk
    assert pace(0.25, 0.5, strict) is PaceStatus.off_track
    assert pace(1.0, 1.0, strict) is PaceStatus.achieved


def test_pace_exactly_0_2_behind_from_real_values_is_on_track() -> None:
    """A KR from 0 to 10 at 6, on day 8 of a 10-day custom period: 0.6 done, 0.8 elapsed."""
    period = parse_period({"start": "2026-10-01", "end": "2026-10-10"})
    fraction = progress(6, 0, 10)
    expected = expected_fraction(period.start, period.end, datetime(2026, 10, 9, tzinfo=UTC))
    assert (fraction, expected) == (0.6, 0.8)
    assert pace(fraction, expected) is PaceStatus.on_track


# -- WindowStats: the KPI's readings in a key result's window --------------------------------

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def reading(index: int, value: float, observed_at: datetime | None = None) -> ReadingRef:
    return ReadingRef(
        reading_id=f"r-{index:04d}",
        value=value,
        observed_at=observed_at or T0 + timedelta(hours=index),
        position=index + 1,
    )


def fold(readings: list[ReadingRef]) -> WindowStats:
    stats = WindowStats()
    for item in readings:
        stats.add(item)
    return stats


def test_empty_window_counts_0_and_has_no_other_value() -> None:
    stats = WindowStats()
    assert stats.value(Aggregation.count) == 0.0
    for aggregation in AGGREGATIONS:
        if aggregation is not Aggregation.count:
            assert stats.value(aggregation) is None
        assert stats.determining(aggregation) is None


def test_window_aggregations_on_new_customers() -> None:
    """ "Onboard 300 new customers" = sum of new_customers readings in the quarter; the
    latest is the one observed last, even when it arrived first."""
    late_observed_first_arrived = reading(3, 120.0)
    others = [reading(0, 80.0), reading(1, 40.0), reading(2, 60.0)]
    stats = fold([late_observed_first_arrived, *others])
    assert stats.value(Aggregation.sum) == 300.0
    assert stats.value(Aggregation.count) == 4.0
    assert stats.value(Aggregation.avg) == 75.0
    assert stats.value(Aggregation.min) == 40.0
    assert stats.value(Aggregation.max) == 120.0
    assert stats.value(Aggregation.latest) == 120.0
    assert stats.determining(Aggregation.latest) == late_observed_first_arrived
    assert stats.determining(Aggregation.min) == others[1]
    assert stats.determining(Aggregation.max) == late_observed_first_arrived
    assert stats.determining(Aggregation.sum) is None
    assert stats.determining(Aggregation.count) is None
    assert stats.determining(Aggregation.avg) is None


@st.composite
def window_readings(draw: st.DrawFn, values: st.SearchStrategy[float]) -> list[ReadingRef]:
    """Readings with distinct ids and distinct observed times, in arrival order."""
    offsets = draw(st.lists(st.integers(0, 92 * 24 * 60 - 1), min_size=1, max_size=20, unique=True))
    return [
        reading(index, draw(values), T0 + timedelta(minutes=offset))
        for index, offset in enumerate(offsets)
    ]


#: Whole numbers: every sum is exact, so only the order of arrival could change a result.
whole = st.integers(-50, 50).map(float)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), readings=window_readings(whole))
def test_window_result_does_not_depend_on_arrival_order(
    data: st.DataObject, readings: list[ReadingRef]
) -> None:
    shuffled = data.draw(st.permutations(readings))
    first, second = fold(readings), fold(shuffled)
    for aggregation in AGGREGATIONS:
        assert first.value(aggregation) == second.value(aggregation), aggregation
    for aggregation in DETERMINED:
        assert first.determining(aggregation) == second.determining(aggregation), aggregation


@settings(max_examples=100, deadline=None)
@given(data=st.data(), readings=window_readings(finite))
def test_window_latest_min_max_count_do_not_depend_on_arrival_order_for_any_value(
    data: st.DataObject, readings: list[ReadingRef]
) -> None:
    shuffled = data.draw(st.permutations(readings))
    first, second = fold(readings), fold(shuffled)
    assert first.value(Aggregation.count) == second.value(Aggregation.count) == len(readings)
    for aggregation in DETERMINED:
        assert first.value(aggregation) == second.value(aggregation), aggregation
        assert first.determining(aggregation) == second.determining(aggregation), aggregation


@settings(max_examples=100, deadline=None)
@given(readings=window_readings(whole))
def test_window_matches_a_direct_computation(readings: list[ReadingRef]) -> None:
    stats = fold(readings)
    values = [item.value for item in readings]
    latest = max(readings, key=lambda item: item.observed_at)
    assert stats.value(Aggregation.sum) == sum(values)
    assert stats.value(Aggregation.avg) == pytest.approx(sum(values) / len(values))
    assert stats.value(Aggregation.min) == min(values)
    assert stats.value(Aggregation.max) == max(values)
    assert stats.value(Aggregation.latest) == latest.value
    assert stats.determining(Aggregation.latest) == latest
    low = stats.determining(Aggregation.min)
    high = stats.determining(Aggregation.max)
    assert low is not None
    assert high is not None
    assert low in readings
    assert high in readings
    assert low.value == min(values)
    assert high.value == max(values)


@settings(max_examples=100, deadline=None)
@example(values=[0.1, 0.2, 0.3])
@given(values=st.lists(finite, min_size=1, max_size=10))
def test_window_sum_and_avg_do_not_depend_on_arrival_order_for_any_value(
    values: list[float],
) -> None:
    readings = [reading(index, value) for index, value in enumerate(values)]
    first, second = fold(readings), fold(readings[::-1])
    assert first.value(Aggregation.sum) == second.value(Aggregation.sum)
    assert first.value(Aggregation.avg) == second.value(Aggregation.avg)


def test_window_ties_are_broken_by_reading_id() -> None:
    """Equal values (min, max) or equal observed times (latest) still give one answer."""
    a = reading(0, 5.0, T0)
    b = ReadingRef("r-0001", 5.0, T0, 2)
    for order in ([a, b], [b, a]):
        stats = fold(order)
        assert stats.determining(Aggregation.min) == a
        assert stats.determining(Aggregation.max) == b
        assert stats.determining(Aggregation.latest) == b


# -- routing readings to windows: late readings ------------------------------------------------


def test_in_window_bounds_are_utc_instants() -> None:
    assert in_window(datetime(2026, 10, 1, tzinfo=UTC), Q4.start, Q4.end)
    assert not in_window(datetime(2026, 10, 1, tzinfo=UTC), Q3.start, Q3.end)
    last_instant_of_q3 = datetime(2026, 9, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert in_window(last_instant_of_q3, Q3.start, Q3.end)
    assert not in_window(last_instant_of_q3, Q4.start, Q4.end)
    assert in_window(datetime(2026, 12, 31, 23, 59, tzinfo=UTC), Q4.start, Q4.end)
    assert not in_window(datetime(2027, 1, 1, tzinfo=UTC), Q4.start, Q4.end)
    # 01:00 on Oct 1 in UTC+2 is still Sep 30 in UTC: Q3
    plus_two = timezone(timedelta(hours=2))
    assert in_window(datetime(2026, 10, 1, 1, tzinfo=plus_two), Q3.start, Q3.end)


def route(windows: dict[str, WindowStats], item: ReadingRef) -> None:
    for label, stats in windows.items():
        period = {"2026-Q3": Q3, "2026-Q4": Q4}[label]
        if in_window(item.observed_at, period.start, period.end):
            stats.add(item)


def snapshot(stats: WindowStats) -> dict[Aggregation, tuple[float | None, ReadingRef | None]]:
    return {agg: (stats.value(agg), stats.determining(agg)) for agg in AGGREGATIONS}


quarters = st.datetimes(
    min_value=datetime(2026, 7, 1), max_value=datetime(2026, 12, 31, 23, 59), timezones=st.just(UTC)
)
in_q3 = st.datetimes(
    min_value=datetime(2026, 7, 1), max_value=datetime(2026, 9, 30, 23, 59), timezones=st.just(UTC)
)


@settings(max_examples=100, deadline=None)
@given(
    earlier=st.lists(st.tuples(quarters, whole), max_size=15),
    late_at=in_q3,
    late_value=whole,
)
def test_late_reading_for_a_past_window_changes_only_that_window(
    earlier: list[tuple[datetime, float]], late_at: datetime, late_value: float
) -> None:
    windows = {"2026-Q3": WindowStats(), "2026-Q4": WindowStats()}
    for index, (observed_at, value) in enumerate(earlier):
        route(windows, reading(index, value, observed_at))
    q3_before, q4_before = snapshot(windows["2026-Q3"]), snapshot(windows["2026-Q4"])

    late = reading(len(earlier), late_value, late_at)  # arrives last, observed in Q3
    route(windows, late)

    assert snapshot(windows["2026-Q4"]) == q4_before
    q3_after = snapshot(windows["2026-Q3"])
    assert q3_after != q3_before
    q3_count_before = q3_before[Aggregation.count][0]
    assert q3_count_before is not None
    assert q3_after[Aggregation.count] == (q3_count_before + 1, None)
    assert windows["2026-Q3"].count + windows["2026-Q4"].count == len(earlier) + 1


def test_period_dates_are_inclusive() -> None:
    """A guard on the fixtures: Q3 ends the day before Q4 starts."""
    assert Q3.end == date(2026, 9, 30)
    assert Q4.start == Q3.end + timedelta(days=1)
