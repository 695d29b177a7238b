"""What the goal service publishes: each stored domain event becomes one integration event
on ``goal.events`` (the outbox relay calls ``integration_event`` for every notification);
and what it notes from others: scores from ``alignment.events``, the KPI catalogue from
``metrics.events``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts import (
    ContractModel,
    Envelope,
    KeyResultCheckedIn,
    KeyResultCheckedInPayload,
    KeyResultScored,
    KPIDefined,
    ObjectiveArchived,
    ObjectiveArchivedPayload,
    ObjectiveDefinition,
    ObjectiveScored,
    ObjectiveSet,
)
from services.goal.domain import CataloguedKPI, Objective, ObjectiveScores
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


def integration_event(domain_event: Any, position: int, epoch: str = "") -> Envelope | None:
    """The envelope the outbox publishes for the stored event at ``position`` of the log, or
    None for what was noted from other services, which stays internal."""
    if isinstance(domain_event, ObjectiveScores.Event | CataloguedKPI.Event):
        return None
    event_class, payload = published_form(domain_event)
    return envelope_for(
        event_class, domain_event, position, payload, str(domain_event.originator_id), epoch=epoch
    )


def _scored_order(event: Envelope) -> tuple[datetime, int]:
    return event.occurred_at, event.position


class ScoreNotes:
    """Keeps the latest published scores of each objective (from ``alignment.events``) so
    that ``GET /objectives/{id}`` shows them; other alignment events are not for us.

    Only the latest score of each objective and key result in a batch is noted: the ones
    before it would be replaced within the same transaction. Latest by when it was scored:
    positions of different epochs (a rebuilt alignment service) do not compare."""

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        latest: dict[tuple[str, str | None], Envelope] = unit.scratch.setdefault("latest", {})
        if isinstance(event, ObjectiveScored):
            subject: tuple[str, str | None] = (event.payload.objective_id, None)
        elif isinstance(event, KeyResultScored):
            subject = (event.payload.objective_id, event.payload.key_result_id)
        else:
            return
        if subject not in latest or _scored_order(latest[subject]) < _scored_order(event):
            latest[subject] = event

    def finish(self, unit: UnitOfWork) -> None:
        latest: dict[tuple[str, str | None], Envelope] = unit.scratch.get("latest", {})
        for (objective_id, key_result_id), event in sorted(
            latest.items(), key=lambda item: _scored_order(item[1])
        ):
            scores = self._scores(unit, objective_id)
            if isinstance(event, ObjectiveScored):
                scores.note_objective(event.payload.model_dump(mode="json"))
            elif isinstance(event, KeyResultScored) and key_result_id is not None:
                scores.note_key_result(
                    key_result_id, event.payload.model_dump(mode="json", exclude={"lineage"})
                )

    @staticmethod
    def _scores(unit: UnitOfWork, objective_id: str) -> ObjectiveScores:
        found = unit.get(ObjectiveScores.create_id(objective_id))
        scores = found if isinstance(found, ObjectiveScores) else ObjectiveScores(objective_id)
        unit.add(scores)
        return scores


class KPINotes:
    """Notes each KPI the metrics service defines (from ``metrics.events``), once, so that an
    objective naming a KPI outside the catalogue gets a warning. Subscribed to ``KPIDefined``
    alone: the readings on the topic are skipped unread (see ``TrackedConsumer``)."""

    event_types = (KPIDefined,)

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        if not isinstance(event, KPIDefined):
            return
        key = event.payload.key
        if unit.get(CataloguedKPI.create_id(key)) is None:
            unit.add(CataloguedKPI(key))

    def finish(self, unit: UnitOfWork) -> None:
        pass
