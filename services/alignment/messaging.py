"""What the alignment service publishes on ``alignment.events``: evaluations whose score or
status changed, and gaps opened and closed. Everything else in its log stays internal."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Tracking

from contracts import (
    GOAL_EVENTS,
    METRICS_EVENTS,
    Envelope,
    GapDetected,
    GapDetectedPayload,
    GapKind,
    GapResolved,
    GapResolvedPayload,
    InvalidEvent,
    KeyResultScored,
    KeyResultScoredPayload,
    LineageItem,
    ObjectiveScored,
    ObjectiveScoredPayload,
    PaceStatus,
    parse_event,
)
from services.alignment.application import AlignmentApplication, AlignmentPolicy
from services.alignment.domain import GapBoard, ObjectiveTrack
from services.shared.broker import read_topic
from services.shared.consumer import UnitOfWork, event_type_header
from services.shared.outbox import envelope_for
from services.shared.settings import Settings
from services.shared.store import store_environment

LINEAGE_FIELDS = frozenset(LineageItem.model_fields)
#: Events applied per transaction when rebuilding offline.
REPLAY_BATCH = 2000


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


async def rebuild_from_topics(
    client_options: dict[str, Any], until: datetime, data_dir: Path
) -> AlignmentApplication:
    """The alignment graph as of ``until``, rebuilt straight from ``goal.events`` and
    ``metrics.events`` (no service involved), by the service's own policy with its clock set
    to ``until``: the same rules, so the same answer. Events after ``until``, invalid ones and
    republished copies are left out. The store lives in ``data_dir`` (a scratch directory)."""
    events: dict[tuple[str, int], Envelope] = {}  # by (origin, position): copies once
    for topic in (GOAL_EVENTS, METRICS_EVENTS):
        for record in await read_topic(client_options, topic):
            try:
                event = parse_event(record.value or b"", event_type_header(record))
            except InvalidEvent:
                continue
            if event.occurred_at <= until:
                events[(event.origin, event.position)] = event
    application = AlignmentApplication(
        env=store_environment(Settings(service="alignment", data_dir=data_dir))
    )
    policy = AlignmentPolicy(application)
    policy.clock = lambda: until
    ordered = sorted(events.values(), key=lambda event: (event.occurred_at, event.position))
    for start in range(0, len(ordered), REPLAY_BATCH):
        batch = ordered[start : start + REPLAY_BATCH]
        unit = UnitOfWork(application)
        for event in batch:
            policy.apply(event, unit)
        policy.finish(unit)
        application.record_batch(
            unit.processing_event(), [Tracking(e.origin, e.position) for e in batch]
        )
    return application
