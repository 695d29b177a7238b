"""KPIs and their readings: health rules (pure functions) and the KPI aggregate (no I/O).

A KPI is an aggregate keyed by its user-chosen key; every accepted reading is one event on
it. Readings may arrive late and out of order: the latest *observed* time is the current
value, whatever the arrival order.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel

from contracts import Direction, Health, KPIDefinition

KPI_NAMESPACE = uuid.UUID("0d6c2f4e-9b7a-4c55-8f3e-2b1a9c7d5e01")
#: ISO-8601 durations of fixed length: weeks, days, hours, minutes, seconds (no years or
#: months, whose length varies).
_ISO_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_interval(text: str) -> timedelta:
    """An ISO-8601 duration such as ``P1D``, ``P1W`` or ``PT15M``; raises ``ValueError``."""
    match = _ISO_DURATION.match(text.strip())
    if match is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"not an ISO-8601 duration: {text!r} (examples: P1D, PT1H, P1W)")
    interval = timedelta(
        **{unit: float(amount) for unit, amount in match.groupdict().items() if amount is not None}
    )
    if interval <= timedelta(0):
        raise ValueError(f"the interval must be positive, got {text!r}")
    return interval


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
    streak: UnhealthyStreak | None, state: Health, value: float, observed_at: datetime
) -> UnhealthyStreak | None:
    """The streak after a new current value (extended in place: this runs for every reading).

    Any value that is not unhealthy breaks it."""
    if state != Health.unhealthy:  # != rather than "is not": state may be a plain str
        return None
    start = _bucket_start(observed_at)
    if streak is None:
        return UnhealthyStreak(since=observed_at, buckets=[(start, value, value, value)])
    last_start, low, high, _ = streak.buckets[-1]
    if start <= last_start:
        streak.buckets[-1] = (last_start, min(low, value), max(high, value), value)
    else:
        streak.buckets.append((start, value, value, value))
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


def check_unit(definition: KPIDefinition, unit: str | None) -> str | None:
    """Why a reading's unit contradicts the KPI's, or None when it does not."""
    if unit is None or definition.unit is None:
        return None
    if unit.strip().casefold() != definition.unit.strip().casefold():
        return f"unit {unit!r} contradicts the KPI's unit {definition.unit!r}"
    return None


class KPI(Aggregate):
    """A KPI: its definition and its current state (latest value by observed time)."""

    @staticmethod
    def create_id(key: str) -> uuid.UUID:
        return uuid.uuid5(KPI_NAMESPACE, key)

    class Defined(Aggregate.Created):
        key: str
        definition: dict[str, Any]
        actor: str
        correlation_id: str | None

    class Redefined(Aggregate.Event):
        definition: dict[str, Any]
        actor: str
        correlation_id: str | None

    class Recorded(Aggregate.Event):
        kpi: str
        reading_id: str
        value: float
        observed_at: datetime
        source: str
        unit: str | None
        health: str
        actor: str
        correlation_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.apply_reading(self)

    @event(Defined)
    def __init__(
        self, key: str, definition: dict[str, Any], actor: str, correlation_id: str | None = None
    ) -> None:
        self.key = key
        self.definition = KPIDefinition.model_validate(definition)
        self.latest_value: float | None = None
        self.latest_observed_at: datetime | None = None
        self.last_arrival: datetime = self.created_on
        self.readings = 0
        #: The current value's health, as text: it survives snapshots unchanged.
        self.health_state: str | None = None
        self.streak: UnhealthyStreak | None = None

    @property
    def health(self) -> Health | None:
        return Health(self.health_state) if self.health_state else None

    def redefine(
        self, definition: KPIDefinition, actor: str, correlation_id: str | None = None
    ) -> None:
        self._redefined(definition.model_dump(mode="json"), actor, correlation_id)

    @event(Redefined)
    def _redefined(
        self, definition: dict[str, Any], actor: str, correlation_id: str | None
    ) -> None:
        self.definition = KPIDefinition.model_validate(definition)
        if self.latest_value is not None:
            now_health = self.health_of(self.latest_value)
            self.health_state = now_health.value
            if now_health != Health.unhealthy:
                self.streak = None
            elif self.streak is None:  # a new target made the current value unhealthy
                self.streak = extend_streak(
                    None,
                    now_health,
                    self.latest_value,
                    self.latest_observed_at or self.modified_on,
                )

    def health_of(self, value: float) -> Health:
        d = self.definition
        return health(value, d.direction, d.target, d.warning)

    def record(
        self,
        *,
        reading_id: str,
        value: float,
        observed_at: datetime,
        source: str,
        unit: str | None,
        actor: str,
        correlation_id: str | None = None,
    ) -> None:
        """Record one reading (already checked for duplicates and unit by the caller)."""
        becomes_current = self.latest_observed_at is None or observed_at >= self.latest_observed_at
        current = value if becomes_current else self.latest_value
        assert current is not None
        self.trigger_event(
            self.Recorded,
            kpi=self.key,
            reading_id=reading_id,
            value=value,
            observed_at=observed_at,
            source=source,
            unit=unit,
            health=self.health_of(current).value,
            actor=actor,
            correlation_id=correlation_id,
        )

    def apply_reading(self, reading: KPI.Recorded) -> None:
        self.readings += 1
        self.last_arrival = reading.timestamp
        if self.latest_observed_at is None or reading.observed_at >= self.latest_observed_at:
            self.latest_value = reading.value
            self.latest_observed_at = reading.observed_at
            self.health_state = reading.health
            self.streak = extend_streak(
                self.streak, Health(reading.health), reading.value, reading.observed_at
            )
