"""The metrics service's pure rules and the KPI aggregate (no I/O): health from the seed
articles' KPIs, staleness, stagnation, intervals, units, and readings arriving out of order."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import Direction, Health, KPIDefinition
from services.metrics.domain import (
    KPI,
    UnhealthyStreak,
    check_unit,
    definition_in_force,
    extend_streak,
    health,
    is_stagnant,
    is_stale,
    judge,
    meaningful_change,
    meets,
    parse_interval,
)
from services.shared.kpi_health import STREAK_BUCKET, stagnation_holds_until

HIGHER = Direction.higher_is_better
LOWER = Direction.lower_is_better
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RANK = {Health.unhealthy: 0, Health.warning: 1, Health.healthy: 2}


def definition(**fields: Any) -> KPIDefinition:
    """Seed KPI: net promoter score, higher is better, target 45, warning 30."""
    values: dict[str, Any] = {
        "key": "net_promoter_score",
        "name": "Net promoter score",
        "unit": "points",
        "direction": HIGHER,
        "target": 45.0,
        "warning": 30.0,
        "interval": "P7D",
        "interval_seconds": 7 * 86400.0,
    }
    values.update(fields)
    return KPIDefinition(**values)


def new_kpi(**fields: Any) -> KPI:
    spec = definition(**fields)
    return KPI(spec.key, spec.model_dump(mode="json"), "alice")


def record(kpi: KPI, reading_id: str, value: float, observed_at: datetime) -> None:
    kpi.record(
        reading_id=reading_id,
        value=value,
        observed_at=observed_at,
        source="survey-tool",
        unit=None,
        actor="survey-tool",
    )


def replay(events: Sequence[Any]) -> KPI:
    result = functools.reduce(lambda aggregate, event: event.mutate(aggregate), events, None)
    assert isinstance(result, KPI)
    return result


def health_now(kpi: KPI) -> Health | None:
    """The KPI's current health (a call, so that mypy does not narrow it across commands)."""
    return kpi.health


def state(kpi: KPI) -> dict[str, Any]:
    return {name: value for name, value in vars(kpi).items() if name != "_pending_events"}


# -- health: the seed articles' KPIs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (50.0, Health.healthy),
        (45.0, Health.healthy),  # exactly the target meets it
        (44.9, Health.warning),
        (35.0, Health.warning),
        (30.0, Health.warning),  # exactly the warning threshold meets it
        (29.9, Health.unhealthy),
        (20.0, Health.unhealthy),
        (-100.0, Health.unhealthy),
    ],
)
def test_net_promoter_score_health(value: float, expected: Health) -> None:
    assert health(value, HIGHER, 45.0, 30.0) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.5, Health.healthy),
        (10.0, Health.healthy),
        (7.5, Health.warning),
        (5.0, Health.warning),
        (4.99, Health.unhealthy),
        (-3.0, Health.unhealthy),  # shrinking revenue
    ],
)
def test_revenue_growth_rate_health(value: float, expected: Health) -> None:
    """Revenue growth rate in percent: target 10%, warning 5%."""
    assert health(value, HIGHER, 10.0, 5.0) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (150.0, Health.healthy),
        (200.0, Health.healthy),
        (250.0, Health.warning),
        (300.0, Health.warning),
        (300.01, Health.unhealthy),
        (400.0, Health.unhealthy),
    ],
)
def test_customer_acquisition_cost_health_lower_is_better(value: float, expected: Health) -> None:
    """Customer acquisition cost in USD: lower is better, target 200, warning 300."""
    assert health(value, LOWER, 200.0, 300.0) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (8.0, Health.healthy),
        (12.0, Health.healthy),
        (12.5, Health.unhealthy),
        (40.0, Health.unhealthy),
    ],
)
def test_kpi_without_warning_threshold_is_healthy_or_unhealthy(
    value: float, expected: Health
) -> None:
    """Employee turnover rate (percent, lower is better) with a target of 12% and no warning."""
    assert health(value, LOWER, 12.0, None) == expected


def test_meets_follows_the_direction() -> None:
    assert meets(45.0, 45.0, HIGHER)
    assert meets(46.0, 45.0, HIGHER)
    assert not meets(44.0, 45.0, HIGHER)
    assert meets(200.0, 200.0, LOWER)
    assert meets(199.0, 200.0, LOWER)
    assert not meets(201.0, 200.0, LOWER)


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
directions = st.sampled_from([HIGHER, LOWER])


@st.composite
def thresholds(draw: st.DrawFn) -> tuple[Direction, float, float | None]:
    """A direction with a target and a warning threshold that does not lie beyond it."""
    direction = draw(directions)
    target = draw(finite)
    warning = draw(st.none() | finite)
    if warning is not None and meets(warning, target, direction):
        warning = target - (warning - target)  # reflect it to the unhealthy side
    return direction, target, warning


@settings(max_examples=200, deadline=None)
@given(config=thresholds(), a=finite, b=finite)
def test_health_is_monotonic_in_the_good_direction(
    config: tuple[Direction, float, float | None], a: float, b: float
) -> None:
    direction, target, warning = config
    worse, better = sorted((a, b)) if direction is HIGHER else sorted((a, b), reverse=True)
    assert (
        RANK[health(better, direction, target, warning)]
        >= RANK[health(worse, direction, target, warning)]
    )


@settings(max_examples=200, deadline=None)
@given(config=thresholds(), value=finite)
def test_health_is_unchanged_by_mirroring(
    config: tuple[Direction, float, float | None], value: float
) -> None:
    """Negating value, target and warning and flipping the direction gives the same health."""
    direction, target, warning = config
    flipped = LOWER if direction is HIGHER else HIGHER
    mirrored = health(-value, flipped, -target, None if warning is None else -warning)
    assert mirrored == health(value, direction, target, warning)


# -- staleness --------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [timedelta(days=1), timedelta(minutes=15), timedelta(days=7)])
def test_staleness_boundary_is_twice_the_interval(interval: timedelta) -> None:
    assert not is_stale(T0, interval, T0)
    assert not is_stale(T0, interval, T0 + interval)
    assert not is_stale(T0, interval, T0 + 2 * interval)
    assert is_stale(T0, interval, T0 + 2 * interval + timedelta(microseconds=1))
    assert is_stale(T0, interval, T0 + 3 * interval)


# -- stagnation -------------------------------------------------------------------------------

WINDOW = timedelta(days=14)
TOLERANCE = 0.05


def unhealthy_run(values: list[float], start: datetime = T0) -> UnhealthyStreak | None:
    """The streak after daily unhealthy NPS readings."""
    streak: UnhealthyStreak | None = None
    for day, value in enumerate(values):
        streak = extend_streak(streak, Health.unhealthy, value, start + timedelta(days=day))
    return streak


def test_meaningful_change_is_the_warning_to_target_distance() -> None:
    assert meaningful_change(definition()) == 15.0
    assert meaningful_change(definition(direction=LOWER, target=200.0, warning=300.0)) == 100.0
    assert meaningful_change(definition(warning=None)) == 45.0
    assert meaningful_change(definition(warning=45.0)) == 45.0
    assert meaningful_change(definition(target=0.0, warning=None)) == 1.0


def test_unhealthy_for_less_than_the_window_is_not_stagnant() -> None:
    streak = unhealthy_run([20.0] * 10)
    assert streak is not None
    assert streak.since == T0
    assert not is_stagnant(streak, T0 + WINDOW - timedelta(seconds=1), WINDOW, TOLERANCE, 15.0)


def test_unhealthy_over_the_window_with_tiny_moves_is_stagnant() -> None:
    streak = unhealthy_run([20.0, 20.3, 20.1, 20.5, 20.2] * 4)
    assert streak is not None
    lows, highs = [b[1] for b in streak.buckets], [b[2] for b in streak.buckets]
    assert (min(lows), max(highs)) == (20.0, 20.5)
    assert is_stagnant(streak, T0 + WINDOW, WINDOW, TOLERANCE, 15.0)
    assert is_stagnant(streak, T0 + timedelta(days=30), WINDOW, TOLERANCE, 15.0)


def test_a_meaningful_move_breaks_stagnation() -> None:
    # 5% of the 15-point warning-to-target gap is 0.75 points.
    just_under = unhealthy_run([20.0] * 10 + [20.74] * 10)
    just_over = unhealthy_run([20.0] * 10 + [20.75] * 10)
    now = T0 + timedelta(days=20)
    assert is_stagnant(just_under, now, WINDOW, TOLERANCE, 15.0)
    assert not is_stagnant(just_over, now, WINDOW, TOLERANCE, 15.0)


def test_a_healthy_value_resets_the_streak() -> None:
    streak = unhealthy_run([20.0] * 20)
    assert is_stagnant(streak, T0 + timedelta(days=20), WINDOW, TOLERANCE, 15.0)
    assert extend_streak(streak, Health.healthy, 50.0, T0 + timedelta(days=20)) is None
    assert extend_streak(streak, Health.warning, 35.0, T0 + timedelta(days=20)) is None
    restarted = extend_streak(None, Health.unhealthy, 20.0, T0 + timedelta(days=21))
    assert restarted is not None
    assert restarted.since == T0 + timedelta(days=21)
    assert not is_stagnant(restarted, T0 + timedelta(days=30), WINDOW, TOLERANCE, 15.0)
    assert not is_stagnant(None, T0 + timedelta(days=365), WINDOW, TOLERANCE, 15.0)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(0, 30), min_size=1, max_size=60),
    spacing_hours=st.integers(1, 48),
    looked_after_hours=st.integers(0, 2000),
    later_fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=5),
)
def test_stagnation_holds_its_answer_until_the_instant_it_names(
    values: list[float],
    spacing_hours: int,
    looked_after_hours: int,
    later_fractions: list[float],
) -> None:
    streak: UnhealthyStreak | None = None
    for n, value in enumerate(values):
        observed = T0 + timedelta(hours=n * spacing_hours)
        streak = extend_streak(streak, Health.unhealthy, value, observed)
    now = T0 + timedelta(hours=looked_after_hours)
    answer = is_stagnant(streak, now, WINDOW, TOLERANCE, 15.0)

    until = stagnation_holds_until(streak, now, WINDOW)

    horizon = until or now + 10 * WINDOW
    assert horizon > now
    for fraction in later_fractions:
        # Short of the horizon: a timedelta times a fraction rounds to whole microseconds.
        later = min(now + (horizon - now) * fraction, horizon - timedelta(microseconds=1))
        assert is_stagnant(streak, later, WINDOW, TOLERANCE, 15.0) == answer


def test_stagnation_of_no_streak_never_changes() -> None:
    assert stagnation_holds_until(None, T0, WINDOW) is None


# -- intervals and units ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P1D", timedelta(days=1)),
        ("PT15M", timedelta(minutes=15)),
        ("P7D", timedelta(days=7)),
        ("PT1H", timedelta(hours=1)),
    ],
)
def test_parse_interval_accepts_iso_8601_durations(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize("text", ["P0D", "PT0S", "-P1D", "", "daily", "P", "86400"])
def test_parse_interval_rejects_non_positive_or_malformed(text: str) -> None:
    with pytest.raises(ValueError, match=r"interval|ISO-8601"):
        parse_interval(text)


@pytest.mark.parametrize("text", ["1 day", "1d", "01:00:00"])
def test_parse_interval_rejects_non_iso_forms(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_interval(text)


def test_check_unit_is_case_insensitive() -> None:
    percent = definition(unit="Percent")
    assert check_unit(percent, "percent") is None
    assert check_unit(percent, "PERCENT") is None
    assert check_unit(percent, " percent ") is None
    assert check_unit(percent, None) is None
    assert check_unit(definition(unit=None), "USD") is None
    reason = check_unit(percent, "USD")
    assert reason is not None
    assert "USD" in reason
    assert "Percent" in reason


def test_a_reading_is_judged_by_the_definition_made_last_before_it_was_observed() -> None:
    first, second = definition(), definition(target=30.0, warning=20.0)
    definitions = [(T0, first), (T0 + timedelta(days=7), second)]
    assert definition_in_force(definitions, T0 - timedelta(days=1)) == first  # before the KPI
    assert definition_in_force(definitions, T0) == first
    assert definition_in_force(definitions, T0 + timedelta(days=7, microseconds=-1)) == first
    assert definition_in_force(definitions, T0 + timedelta(days=7)) == second
    assert definition_in_force(definitions, T0 + timedelta(days=70)) == second
    assert (judge(35.0, first), judge(35.0, second)) == (Health.warning, Health.healthy)


# -- the KPI aggregate ------------------------------------------------------------------------


def test_a_new_kpi_has_no_value() -> None:
    kpi = new_kpi()
    assert kpi.id == KPI.create_id("net_promoter_score")
    assert kpi.key == "net_promoter_score"
    assert kpi.definition == definition()
    assert (kpi.latest_value, kpi.health, kpi.readings, kpi.streak) == (None, None, 0, None)
    assert kpi.last_arrival == kpi.created_on


def test_a_late_reading_does_not_replace_the_current_value() -> None:
    kpi = new_kpi()
    record(kpi, "march", 50.0, T0 + timedelta(days=60))
    record(kpi, "january", 20.0, T0)
    assert kpi.latest_value == 50.0
    assert kpi.latest_observed_at == T0 + timedelta(days=60)
    assert kpi.health == Health.healthy
    assert kpi.readings == 2
    late = kpi.collect_events()[-1]
    assert isinstance(late, KPI.Recorded)
    assert (late.value, late.health) == (20.0, "healthy")  # the KPI's health after it


def test_a_reading_at_the_same_observed_time_replaces_the_current_value() -> None:
    kpi = new_kpi()
    record(kpi, "first", 50.0, T0)
    record(kpi, "correction", 20.0, T0)
    assert kpi.latest_value == 20.0
    assert kpi.health == Health.unhealthy


readings_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=10_000), st.integers(min_value=-100, max_value=100)
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda reading: reading[0],
)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), readings=readings_strategy)
def test_any_arrival_order_keeps_the_latest_observed_value(
    data: st.DataObject, readings: list[tuple[int, int]]
) -> None:
    arrival = data.draw(st.permutations(readings))
    kpi = new_kpi()
    for minute, value in arrival:
        record(kpi, f"r{minute}", float(value), T0 + timedelta(minutes=minute))
    latest_minute, latest_value = max(readings)
    assert kpi.latest_value == latest_value
    assert kpi.latest_observed_at == T0 + timedelta(minutes=latest_minute)
    assert kpi.readings == len(readings)
    assert kpi.health == health(latest_value, HIGHER, 45.0, 30.0)

    recorded = [e for e in kpi.collect_events() if isinstance(e, KPI.Recorded)]
    assert [e.reading_id for e in recorded] == [f"r{minute}" for minute, _ in arrival]
    for count, event in enumerate(recorded, start=1):
        _, current = max(arrival[:count])
        assert event.health == health(current, HIGHER, 45.0, 30.0).value


def test_redefinition_recomputes_the_health_of_the_current_value() -> None:
    kpi = new_kpi()
    record(kpi, "q1", 40.0, T0)
    assert health_now(kpi) == Health.warning
    kpi.redefine(definition(target=35.0, warning=20.0), "alice")
    assert health_now(kpi) == Health.healthy
    assert kpi.definition.target == 35.0
    kpi.redefine(definition(target=60.0, warning=50.0), "alice")
    assert health_now(kpi) == Health.unhealthy
    assert kpi.streak is not None
    assert kpi.streak.since == T0


def test_replaying_the_events_gives_the_same_state() -> None:
    kpi = new_kpi()
    record(kpi, "a", 20.0, T0 + timedelta(days=2))
    record(kpi, "b", 21.0, T0 + timedelta(days=3))
    record(kpi, "late", 60.0, T0)
    kpi.redefine(definition(target=20.0, warning=10.0), "bob")
    record(kpi, "c", 55.0, T0 + timedelta(days=4))
    events = kpi.collect_events()
    assert [type(e) for e in events] == [
        KPI.Defined,
        KPI.Recorded,
        KPI.Recorded,
        KPI.Recorded,
        KPI.Redefined,
        KPI.Recorded,
    ]
    replayed = replay(events)
    assert state(replayed) == state(kpi)
    assert replayed.version == 6
    assert (replayed.latest_value, replayed.readings, replayed.health) == (55.0, 4, Health.healthy)
    assert replayed.last_arrival == events[-1].timestamp


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            # Whole hours as often as not: bucket boundaries are whole hours.
            st.integers(-48, 48).map(lambda hours: hours * 3600)
            | st.integers(-2 * 24 * 3600, 2 * 24 * 3600),
            st.floats(0, 30),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_a_streak_keeps_each_value_in_the_bucket_of_its_observed_time(
    steps: list[tuple[int, float]],
) -> None:
    """Bucket by bucket of observed time, low, high and last value; a late value (observed
    before the last bucket began) goes to the last bucket."""
    streak: UnhealthyStreak | None = None
    expected: list[tuple[datetime, float, float, float]] = []
    observed = T0
    for offset_seconds, value in steps:
        observed += timedelta(seconds=offset_seconds)
        streak = extend_streak(streak, Health.unhealthy, value, observed)
        start = datetime.fromtimestamp(
            observed.timestamp() // STREAK_BUCKET.total_seconds() * STREAK_BUCKET.total_seconds(),
            tz=UTC,
        )
        if expected and start <= expected[-1][0]:
            last_start, low, high, _ = expected[-1]
            expected[-1] = (last_start, min(low, value), max(high, value), value)
        else:
            expected.append((start, value, value, value))
    assert streak is not None
    assert streak.since == T0 + timedelta(seconds=steps[0][0])
    assert streak.buckets == expected
