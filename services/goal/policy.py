"""What the goal service notes from other services, exactly once (``TrackedConsumer``): the
latest scores from ``alignment.events``, and the KPI catalogue from ``metrics.events``, both
through one consumer (``Notes``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from contracts import Envelope, KeyResultScored, KPIDefined, ObjectiveScored
from services.goal.domain import CataloguedKPI, ObjectiveScores
from services.shared.consumer import UnitOfWork


def _scored_order(event: Envelope) -> tuple[datetime, int]:
    return event.occurred_at, event.position


@dataclass
class LatestScores:
    """One batch's latest score event of each objective (key result None) and key result."""

    latest: dict[tuple[str, str | None], Envelope] = field(default_factory=dict)


class ScoreNotes:
    """Keeps the latest published scores of each objective (from ``alignment.events``) so
    that ``GET /objectives/{id}`` shows them; other alignment events are not for us.

    Only the latest score of each objective and key result in a batch is noted: the ones
    before it would be replaced within the same transaction. Latest by when it was scored:
    positions of different epochs (a rebuilt alignment service) do not compare."""

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        latest = unit.state(LatestScores, LatestScores).latest
        if isinstance(event, ObjectiveScored):
            subject: tuple[str, str | None] = (event.payload.objective_id, None)
        elif isinstance(event, KeyResultScored):
            subject = (event.payload.objective_id, event.payload.key_result_id)
        else:
            return
        if subject not in latest or _scored_order(latest[subject]) < _scored_order(event):
            latest[subject] = event

    def finish(self, unit: UnitOfWork) -> None:
        noted = unit.state_if_any(LatestScores)
        if noted is None:
            return
        for (objective_id, key_result_id), event in sorted(
            noted.latest.items(), key=lambda item: _scored_order(item[1])
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


class Notes:
    """Scores and the KPI catalogue, for one consumer of both topics: every consumer costs its
    fetches and polls even while idle, and the readings on ``metrics.events`` are skipped
    unread, so they hold up the scores no more than a consumer of their own would.

    Subscribed to the scores and ``KPIDefined`` alone: the other alignment events and the
    readings are not for goal (see ``TrackedConsumer``)."""

    event_types = (ObjectiveScored, KeyResultScored, *KPINotes.event_types)

    def __init__(self) -> None:
        self.scores = ScoreNotes()
        self.catalogue = KPINotes()

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        if isinstance(event, KPIDefined):
            self.catalogue.apply(event, unit)
        else:
            self.scores.apply(event, unit)

    def finish(self, unit: UnitOfWork) -> None:
        self.scores.finish(unit)
        self.catalogue.finish(unit)
