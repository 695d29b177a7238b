"""Events published by the goal service on ``goal.events``."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from contracts.envelope import ContractModel, Envelope
from contracts.topics import GOAL_EVENTS


class Level(StrEnum):
    company = "company"
    department = "department"
    team = "team"
    individual = "individual"


class ObjectiveType(StrEnum):
    committed = "committed"
    aspirational = "aspirational"


class ObjectiveStatus(StrEnum):
    active = "active"
    archived = "archived"


class KeyResultKind(StrEnum):
    metric = "metric"
    kpi = "kpi"
    milestone = "milestone"
    rollup = "rollup"


class Aggregation(StrEnum):
    """How a ``kpi`` key result turns its KPI's readings in the period into one value."""

    latest = "latest"
    sum = "sum"
    avg = "avg"
    min = "min"
    max = "max"
    count = "count"  # type: ignore[assignment]  # shadows str.count, by design of the name


class Cadence(StrEnum):
    annual = "annual"
    quarterly = "quarterly"
    monthly = "monthly"
    custom = "custom"


class Period(ContractModel):
    """The time box of an objective; both dates are inclusive."""

    label: str = Field(description='"2026", "2026-Q4", "2026-11" or "START..END" for custom.')
    cadence: Cadence
    start: date
    end: date

    @model_validator(mode="after")
    def _ends_after_start(self) -> Period:
        if self.end < self.start:
            raise ValueError(f"period ends ({self.end}) before it starts ({self.start})")
        return self


class KeyResultDefinition(ContractModel):
    id: str
    title: str
    kind: KeyResultKind
    unit: str | None = None
    baseline: float | None = None
    target: float | None = None
    weight: float = Field(default=1.0, ge=0)
    kpi: str | None = Field(default=None, description="Key of the linked KPI (kind kpi).")
    aggregation: Aggregation | None = Field(
        default=None, description="How readings in the period become one value (kind kpi)."
    )
    checklist: list[str] = Field(
        default_factory=list, description="Checklist items (kind milestone, optional)."
    )


class ObjectiveDefinition(ContractModel):
    """The whole definition of an objective: a consumer never needs to call back."""

    id: str
    title: str
    description: str = ""
    owner: str | None = Field(description="Accountable owner; the goal service requires one.")
    contributors: list[str] = Field(default_factory=list)
    org_unit: str
    level: Level
    period: Period
    type: ObjectiveType = ObjectiveType.committed
    weight: float = Field(default=1.0, ge=0)
    parent_id: str | None = None
    parent_key_result_id: str | None = None
    status: ObjectiveStatus = ObjectiveStatus.active
    key_results: list[KeyResultDefinition]


class ObjectiveSet(Envelope):
    """An objective was created or redefined; carries its full definition (state transfer).

    Version 2 made ``period`` an object with explicit dates; version 1 carried only its label.
    """

    topic: ClassVar[str] = GOAL_EVENTS
    event_type: Literal["ObjectiveSet"] = "ObjectiveSet"
    schema_version: Literal[2] = 2
    producer: Literal["goal"] = "goal"
    payload: ObjectiveDefinition


class ObjectiveArchivedPayload(ContractModel):
    objective_id: str
    reason: str | None = None


class ObjectiveArchived(Envelope):
    topic: ClassVar[str] = GOAL_EVENTS
    event_type: Literal["ObjectiveArchived"] = "ObjectiveArchived"
    schema_version: Literal[1] = 1
    producer: Literal["goal"] = "goal"
    payload: ObjectiveArchivedPayload


class KeyResultCheckedInPayload(ContractModel):
    objective_id: str
    key_result_id: str
    value: float | None = Field(default=None, description="New current value (metric kind).")
    done: bool | None = Field(default=None, description="Milestone done or not.")
    checklist_done: list[str] | None = Field(
        default=None, description="Checklist items done so far (milestone with checklist)."
    )
    confidence: int | None = Field(default=None, ge=0, le=10)
    comment: str | None = None


class KeyResultCheckedIn(Envelope):
    topic: ClassVar[str] = GOAL_EVENTS
    event_type: Literal["KeyResultCheckedIn"] = "KeyResultCheckedIn"
    schema_version: Literal[1] = 1
    producer: Literal["goal"] = "goal"
    payload: KeyResultCheckedInPayload
