"""What the goal service publishes: each stored domain event becomes one integration event
on ``goal.events`` (the outbox relay calls ``integration_event`` for every notification)."""

from __future__ import annotations

from typing import Any

from contracts import (
    ContractModel,
    Envelope,
    KeyResultCheckedIn,
    KeyResultCheckedInPayload,
    KeyResultScored,
    ObjectiveArchived,
    ObjectiveArchivedPayload,
    ObjectiveDefinition,
    ObjectiveScored,
    ObjectiveSet,
)
from services.goal.domain import Objective, ObjectiveScores
from services.shared.consumer import UnitOfWork
from services.shared.outbox import envelope_for


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


def integration_event(domain_event: Any, position: int) -> Envelope | None:
    """The envelope the outbox publishes for the stored event at ``position`` of the log, or
    None for the scores read model, which stays internal."""
    if isinstance(domain_event, ObjectiveScores.Event):
        return None
    event_class, payload = published_form(domain_event)
    return envelope_for(
        event_class, domain_event, position, payload, str(domain_event.originator_id)
    )


class ScoreNotes:
    """Keeps the latest published scores of each objective (from ``alignment.events``) so
    that ``GET /objectives/{id}`` shows them; other alignment events are not for us."""

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        if isinstance(event, ObjectiveScored):
            scores = self._scores(unit, event.payload.objective_id)
            scores.note_objective(event.payload.model_dump(mode="json"))
        elif isinstance(event, KeyResultScored):
            scores = self._scores(unit, event.payload.objective_id)
            scores.note_key_result(
                event.payload.key_result_id,
                event.payload.model_dump(mode="json", exclude={"lineage"}),
            )

    def finish(self, unit: UnitOfWork) -> None:
        pass  # every score is noted as it comes

    @staticmethod
    def _scores(unit: UnitOfWork, objective_id: str) -> ObjectiveScores:
        found = unit.get(ObjectiveScores.create_id(objective_id))
        scores = found if isinstance(found, ObjectiveScores) else ObjectiveScores(objective_id)
        unit.add(scores)
        return scores
