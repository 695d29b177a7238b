"""Events published by the alignment service on ``alignment.events``."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from contracts.envelope import ContractModel, Envelope
from contracts.topics import ALIGNMENT_EVENTS


class PaceStatus(StrEnum):
    achieved = "achieved"
    on_track = "on_track"
    at_risk = "at_risk"
    off_track = "off_track"


class GapKind(StrEnum):
    kpi_unaddressed = "kpi_unaddressed"
    kr_without_data = "kr_without_data"
    objective_without_owner = "objective_without_owner"
    kr_count_out_of_range = "kr_count_out_of_range"
    too_many_objectives = "too_many_objectives"
    orphan_objective = "orphan_objective"
    stale_kpi = "stale_kpi"


class LineageItem(ContractModel):
    """One input that determined a score: a KPI reading or a check-in, by producer position."""

    producer: Literal["goal", "metrics"]
    position: int = Field(ge=1)
    event_type: Literal["KPIRecorded", "KeyResultCheckedIn", "ObjectiveScored"]
    reading_id: str | None = None
    observed_at: AwareDatetime | None = None


Score = float  # always within [0, 1]


class KeyResultScoredPayload(ContractModel):
    objective_id: str
    key_result_id: str
    score: Score = Field(ge=0, le=1)
    progress: float = Field(description="Unclamped progress from baseline (0) to target (1).")
    value: float | None
    expected: float = Field(ge=0, le=1, description="Elapsed fraction of the period.")
    status: PaceStatus
    as_of: AwareDatetime
    lineage: list[LineageItem] = Field(default_factory=list)


class KeyResultScored(Envelope):
    topic: ClassVar[str] = ALIGNMENT_EVENTS
    event_type: Literal["KeyResultScored"] = "KeyResultScored"
    schema_version: Literal[1] = 1
    producer: Literal["alignment"] = "alignment"
    payload: KeyResultScoredPayload


class ObjectiveScoredPayload(ContractModel):
    objective_id: str
    score: Score = Field(ge=0, le=1)
    expected: float = Field(ge=0, le=1)
    status: PaceStatus
    as_of: AwareDatetime
    final: bool = Field(default=False, description="True once the period has closed.")
    success: bool | None = Field(
        default=None,
        description="Final grade verdict; an aspirational objective succeeds from 0.7.",
    )


class ObjectiveScored(Envelope):
    topic: ClassVar[str] = ALIGNMENT_EVENTS
    event_type: Literal["ObjectiveScored"] = "ObjectiveScored"
    schema_version: Literal[1] = 1
    producer: Literal["alignment"] = "alignment"
    payload: ObjectiveScoredPayload


class GapDetectedPayload(ContractModel):
    gap_id: str = Field(description="Stable: the same gap on the same subject keeps its id.")
    kind: GapKind
    subject: str = Field(description="Id of the objective or key result, or the KPI key.")
    owner: str | None = None
    period: str | None = None
    message: str


class GapDetected(Envelope):
    """A gap opened, or an open gap changed its owner, period or message: a consumer keeps
    the latest ``GapDetected`` of each ``gap_id`` until its ``GapResolved``."""

    topic: ClassVar[str] = ALIGNMENT_EVENTS
    event_type: Literal["GapDetected"] = "GapDetected"
    schema_version: Literal[1] = 1
    producer: Literal["alignment"] = "alignment"
    payload: GapDetectedPayload


class GapResolvedPayload(ContractModel):
    gap_id: str
    kind: GapKind
    subject: str
    reason: str


class GapResolved(Envelope):
    topic: ClassVar[str] = ALIGNMENT_EVENTS
    event_type: Literal["GapResolved"] = "GapResolved"
    schema_version: Literal[1] = 1
    producer: Literal["alignment"] = "alignment"
    payload: GapResolvedPayload
