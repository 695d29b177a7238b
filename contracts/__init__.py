"""Integration events: the single source of truth for what crosses Kafka.

JSON Schemas (``contracts/schemas``) and the AsyncAPI document (``contracts/asyncapi.yaml``)
are generated from these models by ``python -m contracts.export``.
"""

from contracts.alignment import (
    GapDetected,
    GapDetectedPayload,
    GapKind,
    GapResolved,
    GapResolvedPayload,
    KeyResultScored,
    KeyResultScoredPayload,
    LineageItem,
    ObjectiveScored,
    ObjectiveScoredPayload,
    PaceStatus,
)
from contracts.envelope import ContractModel, Envelope, Producer, stable_event_id
from contracts.goal import (
    Aggregation,
    Cadence,
    KeyResultCheckedIn,
    KeyResultCheckedInPayload,
    KeyResultDefinition,
    KeyResultKind,
    Level,
    ObjectiveArchived,
    ObjectiveArchivedPayload,
    ObjectiveDefinition,
    ObjectiveSet,
    ObjectiveStatus,
    ObjectiveType,
    Period,
)
from contracts.metrics import (
    Direction,
    Health,
    Indicator,
    KPIDefined,
    KPIDefinition,
    KPIRecorded,
    KPIRecordedPayload,
)
from contracts.periods import parse_period
from contracts.readings import KPIReading, derive_reading_id
from contracts.registry import EVENT_TYPES, InvalidEvent, current_version, parse_event, upcast
from contracts.topics import (
    ALIGNMENT_EVENTS,
    ALL_TOPICS,
    GOAL_EVENTS,
    KPI_READINGS,
    METRICS_EVENTS,
    dlq_topic,
)

__all__ = [
    "ALIGNMENT_EVENTS",
    "ALL_TOPICS",
    "EVENT_TYPES",
    "GOAL_EVENTS",
    "KPI_READINGS",
    "METRICS_EVENTS",
    "Aggregation",
    "Cadence",
    "ContractModel",
    "Direction",
    "Envelope",
    "GapDetected",
    "GapDetectedPayload",
    "GapKind",
    "GapResolved",
    "GapResolvedPayload",
    "Health",
    "Indicator",
    "InvalidEvent",
    "KPIDefined",
    "KPIDefinition",
    "KPIReading",
    "KPIRecorded",
    "KPIRecordedPayload",
    "KeyResultCheckedIn",
    "KeyResultCheckedInPayload",
    "KeyResultDefinition",
    "KeyResultKind",
    "KeyResultScored",
    "KeyResultScoredPayload",
    "Level",
    "LineageItem",
    "ObjectiveArchived",
    "ObjectiveArchivedPayload",
    "ObjectiveDefinition",
    "ObjectiveScored",
    "ObjectiveScoredPayload",
    "ObjectiveSet",
    "ObjectiveStatus",
    "ObjectiveType",
    "PaceStatus",
    "Period",
    "Producer",
    "current_version",
    "derive_reading_id",
    "dlq_topic",
    "parse_event",
    "parse_period",
    "stable_event_id",
    "upcast",
]
