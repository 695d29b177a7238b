"""What the alignment service publishes on ``alignment.events``: evaluations whose score or
status changed, and gaps opened and closed. Everything else in its log stays internal."""

from __future__ import annotations

from typing import Any

from contracts import (
    Envelope,
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
from services.alignment.domain import GapBoard, ObjectiveTrack
from services.shared.integration_events import envelope_for

LINEAGE_FIELDS = frozenset(LineageItem.model_fields)


def integration_event(domain_event: Any, position: int, epoch: str = "") -> Envelope | None:
    """The envelope for a stored event, or None for one that is not published."""
    if isinstance(domain_event, ObjectiveTrack.KeyResultEvaluated) and domain_event.published:
        aggregate_id = domain_event.objective_id
        event_class: type[Envelope] = KeyResultScored
        payload: Any = KeyResultScoredPayload(
            objective_id=domain_event.objective_id,
            key_result_id=domain_event.key_result_id,
            score=domain_event.score,
            progress=domain_event.progress,
            value=domain_event.value,
            expected=domain_event.expected,
            status=PaceStatus(domain_event.status),
            as_of=domain_event.as_of,
            # The published lineage keeps the contract's fields (the source stays internal).
            lineage=[
                LineageItem.model_validate({k: v for k, v in item.items() if k in LINEAGE_FIELDS})
                for item in domain_event.lineage
            ],
        )
    elif isinstance(domain_event, ObjectiveTrack.ObjectiveEvaluated) and domain_event.published:
        aggregate_id = domain_event.objective_id
        event_class = ObjectiveScored
        payload = ObjectiveScoredPayload(
            objective_id=domain_event.objective_id,
            score=domain_event.score,
            expected=domain_event.expected,
            status=PaceStatus(domain_event.status),
            as_of=domain_event.as_of,
            final=domain_event.final,
            success=domain_event.success,
        )
    elif isinstance(domain_event, GapBoard.GapOpened):
        aggregate_id = domain_event.gap_id
        event_class = GapDetected
        payload = GapDetectedPayload(
            gap_id=domain_event.gap_id,
            kind=GapKind(domain_event.kind),
            subject=domain_event.subject,
            owner=domain_event.owner,
            period=domain_event.period,
            message=domain_event.message,
        )
    elif isinstance(domain_event, GapBoard.GapClosed):
        aggregate_id = domain_event.gap_id
        event_class = GapResolved
        payload = GapResolvedPayload(
            gap_id=domain_event.gap_id,
            kind=GapKind(domain_event.kind),
            subject=domain_event.subject,
            reason=domain_event.reason,
        )
    else:
        return None
    return envelope_for(event_class, domain_event, position, payload, aggregate_id, epoch=epoch)
