"""KPI health rules of SPEC section 2, as pure functions: healthy / warning / unhealthy in the
KPI's direction, stale, and stagnant (unhealthy without meaningful change over a window).

Shared by the metrics service, which records each reading's health, and the alignment
service, which follows stagnation to open ``kpi_unaddressed`` gaps.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from contracts import Direction, Health, KPIDefinition


def meets(value: float, threshold: float, direction: Direction) -> bool:
    """Whether ``value`` is at or beyond ``threshold`` in the KPI's good direction."""
    if direction is Direction.higher_is_better:
        return value >= threshold
    return value <= threshold


def health(value: float, direction: Direction, target: float, warning: float | None) -> Health:
    """healthy when the value meets the target, warning when it meets the warning threshold,
    else unhealthy; "meets" follows the direction (lower is better for churn or cost)."""
    if meets(value, target, direction):
        return Health.healthy
    if warning is not None and meets(value, warning, direction):
        return Health.warning
    return Health.unhealthy


def is_stale(last_arrival: datetime, interval: timedelta, now: datetime) -> bool:
    """No reading arrived within twice the expected interval."""
    return now - last_arrival > 2 * interval


#: Stagnation keeps the range of values per bucket of observed time, not every value, so a
#: KPI with millions of readings keeps a small state; windows are resolved to a bucket.
STREAK_BUCKET = timedelta(hours=6)
#: The longest stagnation window supported: older buckets are dropped.
STREAK_HISTORY = timedelta(days=92)


class UnhealthyStreak(BaseModel):
    """An unbroken run of unhealthy current values: when it began, and per bucket of observed
    time ``(bucket start, low, high, last value)``, oldest first."""

    since: datetime
    buckets: list[tuple[datetime, float, float, float]]


def _bucket_start(moment: datetime) -> datetime:
    step = STREAK_BUCKET.total_seconds()
    return datetime.fromtimestamp(moment.timestamp() // step * step, tz=moment.tzinfo)


def extend_streak(
    streak: UnhealthyStreak | None, state: Health | str, value: float, observed_at: datetime
) -> UnhealthyStreak | None:
    """The streak after a new current value (extended in place: this runs for every reading).

    Any value that is not unhealthy breaks it."""
    if state != Health.unhealthy:  # != rather than "is not": state may be a plain str
        return None
    if streak is None:
        # Constructed, not validated: every field is made here with its declared type.
        start = _bucket_start(observed_at)
        return UnhealthyStreak.model_construct(
            since=observed_at, buckets=[(start, value, value, value)]
        )
    last_start, low, high, _ = streak.buckets[-1]
    # Bucket starts are bucket boundaries, so a value observed before the end of the last
    # bucket falls in it (or is late, and the last bucket takes it): most values do, and
    # their own bucket's start need not be worked out.
    if observed_at < last_start + STREAK_BUCKET:
        streak.buckets[-1] = (last_start, min(low, value), max(high, value), value)
    else:
        streak.buckets.append((_bucket_start(observed_at), value, value, value))
        horizon = observed_at - STREAK_HISTORY
        while len(streak.buckets) > 1 and streak.buckets[0][0] < horizon:
            streak.buckets.pop(0)
    return streak


def meaningful_change(definition: KPIDefinition) -> float:
    """The smallest move that counts as change: the distance from warning threshold to target
    (or the target's size when there is no warning threshold), never zero."""
    if definition.warning is not None and definition.warning != definition.target:
        return abs(definition.target - definition.warning)
    return abs(definition.target) or 1.0


def is_stagnant(
    streak: UnhealthyStreak | None,
    now: datetime,
    window: timedelta,
    tolerance: float,
    scale: float,
) -> bool:
    """Unhealthy for at least ``window``, and over the window (the value in force when it
    began, and every value since) moving less than ``tolerance`` x ``scale``."""
    if streak is None or now - streak.since < window:
        return False
    begins = now - window
    inside = [bucket for bucket in streak.buckets if bucket[0] + STREAK_BUCKET > begins]
    before = [bucket for bucket in streak.buckets if bucket[0] + STREAK_BUCKET <= begins]
    values = [low for _, low, _, _ in inside] + [high for _, _, high, _ in inside]
    if before:
        values.append(before[-1][3])  # the value in force when the window began
    return max(values) - min(values) < tolerance * scale


def stagnation_holds_until(
    streak: UnhealthyStreak | None, now: datetime, window: timedelta
) -> datetime | None:
    """The first instant after ``now`` at which ``is_stagnant`` may answer otherwise for the
    same streak, or None if it never will: time changes the answer only when the streak
    becomes as long as the window, or when a bucket leaves the window."""
    if streak is None:
        return None
    changes = [streak.since + window] + [
        start + STREAK_BUCKET + window for start, *_ in streak.buckets
    ]
    later = [instant for instant in changes if instant > now]
    return min(later) if later else None
