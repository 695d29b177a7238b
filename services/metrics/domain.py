"""KPIs and their readings: health rules (pure functions) and the KPI aggregate (no I/O).

A KPI is an aggregate keyed by its user-chosen key; every accepted reading is one event on
it. Readings may arrive late and out of order: the latest *observed* time is the current
value, whatever the arrival order.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, TypeAdapter

from contracts import Direction, Health, KPIDefinition

KPI_NAMESPACE = uuid.UUID("0d6c2f4e-9b7a-4c55-8f3e-2b1a9c7d5e01")
_DURATION = TypeAdapter(timedelta)


def parse_interval(text: str) -> timedelta:
    """An ISO-8601 duration such as ``P1D`` or ``PT15M``; raises ``ValueError``."""
    try:
        interval = _DURATION.validate_python(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 duration: {text!r} (examples: P1D, PT1H, P7D)") from None
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


class UnhealthyStreak(BaseModel):
    """An unbroken run of unhealthy current values: when it began and the range it moved in."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    low: float
    high: float


def extend_streak(
    streak: UnhealthyStreak | None, state: Health, value: float, observed_at: datetime
) -> UnhealthyStreak | None:
    """The streak after a new current value: broken by any value that is not unhealthy."""
    if state != Health.unhealthy:  # != rather than "is not": state may be a plain str
        return None
    if streak is None:
        return UnhealthyStreak(since=observed_at, low=value, high=value)
    return UnhealthyStreak(
        since=streak.since, low=min(streak.low, value), high=max(streak.high, value)
    )


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
    """Unhealthy for at least ``window`` while moving less than ``tolerance`` x ``scale``."""
    if streak is None or now - streak.since < window:
        return False
    return streak.high - streak.low < tolerance * scale


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
        self.health: Health | None = None
        self.streak: UnhealthyStreak | None = None

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
            self.health = self.health_of(self.latest_value)
            self.streak = extend_streak(
                None, self.health, self.latest_value, self.latest_observed_at or self.modified_on
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
            self.health = Health(reading.health)
            self.streak = extend_streak(
                self.streak, self.health, reading.value, reading.observed_at
            )
