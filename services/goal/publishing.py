"""What the goal service publishes: each stored change of an objective becomes one integration
event on ``goal.events`` (the outbox relay calls ``integration_event`` for every stored
event); what it noted from other services stays internal."""

from __future__ import annotations

from typing import Any

from contracts import (
    ContractModel,
    Envelope,
    KeyResultCheckedIn,
    KeyResultCheckedInPayload,
    ObjectiveArchived,
    ObjectiveArchivedPayload,
    ObjectiveDefinition,
    ObjectiveSet,
)
from services.goal.domain import CataloguedKPI, Objective, ObjectiveScores
from services.shared.integration_events import Publication, publication_for


def published_form(domain_event: Any) -> tuple[type[Envelope], ContractModel]:
    """The integration event class and payload that a stored domain event is published as."""
    objective_id = str(domain_event.originator_id)
    if isinstance(domain_event, Objective.Defined | Objective.Redefined):
        return ObjectiveSet, ObjectiveDefinition.model_validate(
            domain_event.definition | {"id": objective_id}
        )
    if isinstance(domain_event, Objective.KeyResultCheckedIn):
        return KeyResultCheckedIn, KeyResultCheckedInPayload(
            objective_id=objective_id,
            key_result_id=domain_event.key_result_id,
            value=domain_event.value,
            done=domain_event.done,
            checklist_done=domain_event.checklist_done,
            confidence=domain_event.confidence,
            comment=domain_event.comment,
        )
    if isinstance(domain_event, Objective.Archived):
        return ObjectiveArchived, ObjectiveArchivedPayload(
            objective_id=objective_id, reason=domain_event.reason
        )
    raise TypeError(f"no integration event for {type(domain_event).__qualname__}")


def integration_event(domain_event: Any, position: int, epoch: str = "") -> Publication | None:
    """What the outbox publishes for the stored event at ``position`` of the log, or
    None for what was noted from other services, which stays internal."""
    if isinstance(domain_event, ObjectiveScores.Event | CataloguedKPI.Event):
        return None
    event_class, payload = published_form(domain_event)
    return publication_for(
        event_class, domain_event, position, payload, str(domain_event.originator_id), epoch=epoch
    )
