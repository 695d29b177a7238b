"""KPIs and their readings: health rules (pure functions) and the KPI aggregate (no I/O).

A KPI is an aggregate keyed by its user-chosen key; every accepted reading is one event on
it. Readings may arrive late and out of order: the latest *observed* time is the current
value, whatever the arrival order.
"""

from __future__ import annotations

import re
import uuid
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate, event

from contracts import Health, KPIDefinition
from services.shared.kpi_health import (
    STREAK_BUCKET,
    STREAK_HISTORY,
    UnhealthyStreak,
    extend_streak,
    health,
    is_stagnant,
    is_stale,
    meaningful_change,
    meets,
)

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


def check_unit(definition: KPIDefinition, unit: str | None) -> str | None:
    """Why a reading's unit contradicts the KPI's, or None when it does not."""
    if unit is None or definition.unit is None:
        return None
    if unit.strip().casefold() != definition.unit.strip().casefold():
        return f"unit {unit!r} contradicts the KPI's unit {definition.unit!r}"
    return None


def judge(value: float, definition: KPIDefinition) -> Health:
    """The health of a value by one definition of its KPI: target, warning and direction."""
    return health(value, definition.direction, definition.target, definition.warning)


def definition_in_force(
    definitions: Sequence[tuple[datetime, KPIDefinition]], observed_at: datetime
) -> KPIDefinition:
    """The definition in force at ``observed_at``, from the KPI's definitions by the time each
    was made, oldest first: the last one made by then, or the first when the observation is
    older than the KPI (readings may come from before anyone defined it)."""
    made_by_then = bisect_right(definitions, observed_at, key=lambda entry: entry[0])
    return definitions[max(made_by_then - 1, 0)][1]


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
        #: The KPI's health once this reading is recorded: its current value's, which is not
        #: this reading's when the reading is late.
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
        return judge(value, self.definition)

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


__all__ = [
    "KPI",
    "STREAK_BUCKET",
    "STREAK_HISTORY",
    "UnhealthyStreak",
    "check_unit",
    "definition_in_force",
    "extend_streak",
    "health",
    "is_stagnant",
    "is_stale",
    "judge",
    "meaningful_change",
    "meets",
    "parse_interval",
]
