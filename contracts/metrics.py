"""Events published by the metrics service on ``metrics.events``."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from contracts.envelope import ContractModel, Envelope
from contracts.topics import METRICS_EVENTS

#: A KPI's key: chosen by people, stable, and the Kafka key of its events.
KPI_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,127}$"


class Direction(StrEnum):
    higher_is_better = "higher_is_better"
    lower_is_better = "lower_is_better"


class Indicator(StrEnum):
    leading = "leading"
    lagging = "lagging"


class Health(StrEnum):
    healthy = "healthy"
    warning = "warning"
    unhealthy = "unhealthy"


class KPIDefinition(ContractModel):
    key: str = Field(pattern=KPI_KEY_PATTERN, description="Stable key chosen by the user.")
    name: str
    unit: str | None = None
    direction: Direction
    target: float
    warning: float | None = Field(
        default=None, description="Threshold between warning and unhealthy, same direction."
    )
    interval: str = Field(description="Expected update interval, ISO-8601 duration (P1D).")
    interval_seconds: float = Field(gt=0, description="The interval in seconds, for consumers.")
    indicator: Indicator = Indicator.lagging
    owner: str | None = None
    description: str = ""


class KPIDefined(Envelope):
    """A KPI was defined or redefined; carries the whole definition."""

    topic: ClassVar[str] = METRICS_EVENTS
    event_type: Literal["KPIDefined"] = "KPIDefined"
    schema_version: Literal[1] = 1
    producer: Literal["metrics"] = "metrics"
    payload: KPIDefinition


class KPIRecordedPayload(ContractModel):
    kpi: str
    value: float
    observed_at: AwareDatetime
    source: str
    reading_id: str
    unit: str | None = None
    health: Health = Field(description="The KPI's health after this reading.")


class KPIRecorded(Envelope):
    """One reading was accepted and stored (duplicates by ``reading_id`` never are)."""

    topic: ClassVar[str] = METRICS_EVENTS
    event_type: Literal["KPIRecorded"] = "KPIRecorded"
    schema_version: Literal[1] = 1
    producer: Literal["metrics"] = "metrics"
    payload: KPIRecordedPayload
