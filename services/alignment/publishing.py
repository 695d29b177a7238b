"""What the alignment service publishes on ``alignment.events``: evaluations whose score or
status changed, and gaps opened and closed. Everything else in its log stays internal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts import (
    GapDetected,
    GapDetectedPayload,
    GapKind,
    GapResolved,
    GapResolvedPayload,
    KeyResultScored,
    ObjectiveScored,
)
from services.alignment.domain import GapBoard, ObjectiveTrack
from services.shared.integration_events import Publication, publication_for


def integration_event(domain_event: Any, position: int, epoch: str = "") -> Publication | None:
    """The integration event of a stored event, or None for one that is not published.

    Scores are published from their stored fields as they are (one per changed key result
    and objective in every batch), the values the service computed itself; gaps, rare, are
    validated on the way out."""
    if isinstance(domain_event, ObjectiveTrack.KeyResultEvaluated) and domain_event.published:
        payload = {
            "objective_id": domain_event.objective_id,
            "key_result_id": domain_event.key_result_id,
            "score": float(domain_event.score),
            "progress": float(domain_event.progress),
            "value": None if domain_event.value is None else float(domain_event.value),
            "expected": float(domain_event.expected),
            "status": domain_event.status,
            "as_of": domain_event.as_of,
            "lineage": [_citation(item) for item in domain_event.lineage],
        }
        return publication_for(
            KeyResultScored,
            domain_event,
            position,
            payload,
            domain_event.objective_id,
            epoch=epoch,
            trusted=True,
        )
    if isinstance(domain_event, ObjectiveTrack.ObjectiveEvaluated) and domain_event.published:
        payload = {
            "objective_id": domain_event.objective_id,
            "score": float(domain_event.score),
            "expected": float(domain_event.expected),
            "status": domain_event.status,
            "as_of": domain_event.as_of,
            "final": domain_event.final,
            "success": domain_event.success,
        }
        return publication_for(
            ObjectiveScored,
            domain_event,
            position,
            payload,
            domain_event.objective_id,
            epoch=epoch,
            trusted=True,
        )
    if isinstance(domain_event, GapBoard.GapOpened):
        detected = GapDetectedPayload(
            gap_id=domain_event.gap_id,
            kind=GapKind(domain_event.kind),
            subject=domain_event.subject,
            owner=domain_event.owner,
            period=domain_event.period,
            message=domain_event.message,
        )
        return publication_for(
            GapDetected, domain_event, position, detected, domain_event.gap_id, epoch=epoch
        )
    if isinstance(domain_event, GapBoard.GapClosed):
        resolved = GapResolvedPayload(
            gap_id=domain_event.gap_id,
            kind=GapKind(domain_event.kind),
            subject=domain_event.subject,
            reason=domain_event.reason,
        )
        return publication_for(
            GapResolved, domain_event, position, resolved, domain_event.gap_id, epoch=epoch
        )
    return None


def _citation(item: dict[str, Any]) -> dict[str, Any]:
    """A stored lineage item as the contract's ``LineageItem`` in its field order (the source
    stays internal), its observed time an instant again (stored as text)."""
    observed_at = item.get("observed_at")
    return {
        "producer": item["producer"],
        "position": item["position"],
        "event_type": item["event_type"],
        "reading_id": item.get("reading_id"),
        "observed_at": None if observed_at is None else datetime.fromisoformat(observed_at),
    }
