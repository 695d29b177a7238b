"""The goal service's application: commands on objectives and queries of them, and the
catalogue projection that answers lists and filters. State is rebuilt from the service's own
event log."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import get_topic

from contracts import Level, ObjectiveDefinition, ObjectiveStatus
from services.goal.commands import CheckInCommand, ObjectiveCommand, definition_of
from services.goal.domain import (
    CataloguedKPI,
    Objective,
    ObjectiveScores,
    check_definition,
    unknown_kpi_warnings,
)
from services.shared.errors import Conflict, NotFound, RuleViolation, Violation
from services.shared.store import ServiceApplication
from services.shared.telemetry import PROJECTION_POSITION, REPLAY_EVENTS, replaying

#: The events the catalogue projects (check-ins and noted scores change no definition).
OBJECTIVE_TOPICS = [
    get_topic(event_class)
    for event_class in (Objective.Defined, Objective.Redefined, Objective.Archived)
]


class ObjectiveCatalogue:
    """Current definitions of all objectives, projected from the event log.

    It lives in memory and is rebuilt from the log at start-up: dropping it loses nothing.
    """

    def __init__(self) -> None:
        self.position = 0
        self.definitions: dict[str, ObjectiveDefinition] = {}
        self._lock = threading.Lock()

    def catch_up(self, application: ServiceApplication) -> int:
        """Read the objective events stored since the last look (the log's other events,
        the scores noted from the alignment service, are skipped unread); returns how many
        were read."""
        read = 0
        with self._lock:
            head = application.max_position()
            if self.position < head:
                for notification in application.notifications(
                    self.position, stop=head, topics=OBJECTIVE_TOPICS
                ):
                    self._apply(application.mapper.to_domain_event(notification))
                    read += 1
                self.position = head
            PROJECTION_POSITION.labels("catalogue").set(self.position)
        return read

    def follow(
        self, application: ServiceApplication, recordings: Sequence[Recording[UUID]]
    ) -> None:
        """After a commit: apply its events as they are in hand, or read the log when they
        do not follow on from what was applied (another thread's commit came first)."""
        with self._lock:
            if recordings and recordings[0].notification.id == self.position + 1:
                for recording in recordings:
                    self._apply(recording.domain_event)
                self.position = recordings[-1].notification.id
                PROJECTION_POSITION.labels("catalogue").set(self.position)
                return
        self.catch_up(application)

    def _apply(self, domain_event: Any) -> None:
        objective_id = str(domain_event.originator_id)
        if isinstance(domain_event, Objective.Defined | Objective.Redefined):
            self.definitions[objective_id] = ObjectiveDefinition.model_validate(
                domain_event.definition | {"id": objective_id}
            )
        elif isinstance(domain_event, Objective.Archived):
            self.definitions[objective_id] = self.definitions[objective_id].model_copy(
                update={"status": ObjectiveStatus.archived}
            )

    def select(
        self,
        *,
        period: str | None = None,
        owner: str | None = None,
        org_unit: str | None = None,
        level: Level | None = None,
        status: ObjectiveStatus | None = None,
    ) -> list[ObjectiveDefinition]:
        with self._lock:
            found = list(self.definitions.values())
        return [
            definition
            for definition in found
            if (period is None or definition.period.label == period)
            and (owner is None or definition.owner == owner)
            and (org_unit is None or definition.org_unit == org_unit)
            and (level is None or definition.level == level)
            and (status is None or definition.status == status)
        ]


class GoalApplication(ServiceApplication):
    name = "goal"
    #: The scores noted from alignment.events make long histories: snapshots, and a cache
    #: (fast-forwarded from the store on every read, so instances may share the store).
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Objective: 100, ObjectiveScores: 100}
    env: ClassVar[dict[str, str]] = {"AGGREGATE_CACHE_MAXSIZE": "10000"}
    stored_models = (ObjectiveDefinition,)

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self.catalogue = ObjectiveCatalogue()
        with replaying():
            REPLAY_EVENTS.inc(self.catalogue.catch_up(self))
        # Follow every commit, commands and consumed scores alike, so the catalogue never
        # lags the log (its position is a metric: a stalled projection raises an alert).
        self.on_recorded(lambda recordings: self.catalogue.follow(self, recordings))

    # -- commands ---------------------------------------------------------------------------

    def create_objective(
        self, command: ObjectiveCommand, actor: str, correlation_id: str | None = None
    ) -> tuple[Objective, list[str]]:
        definition = self._definition(command, None, None)
        warnings = self._warnings(definition)
        objective = Objective(
            definition.model_dump(mode="json", exclude={"id"}), actor, correlation_id
        )
        self._save(objective)
        return objective, warnings

    def redefine_objective(
        self,
        objective_id: UUID,
        command: ObjectiveCommand,
        actor: str,
        correlation_id: str | None = None,
    ) -> tuple[Objective, list[str]]:
        objective = self.get_objective(objective_id)
        definition = self._definition(command, objective_id, objective)
        warnings = self._warnings(definition)
        objective.redefine(definition, actor, correlation_id)
        self._save(objective)
        return objective, warnings

    def archive_objective(
        self,
        objective_id: UUID,
        reason: str | None,
        actor: str,
        correlation_id: str | None = None,
    ) -> Objective:
        objective = self.get_objective(objective_id)
        objective.archive(reason, actor, correlation_id)
        self._save(objective)
        return objective

    def check_in(
        self,
        objective_id: UUID,
        key_result_id: str,
        command: CheckInCommand,
        actor: str,
        correlation_id: str | None = None,
    ) -> Objective:
        if all(value is None for value in command.model_dump().values()):
            raise RuleViolation.single(
                ("value",),
                "empty_check_in",
                "a check-in needs a value, done, checklist_done, confidence or comment",
            )
        objective = self.get_objective(objective_id)
        objective.check_in(
            key_result_id,
            value=command.value,
            done=command.done,
            checklist_done=command.checklist_done,
            confidence=command.confidence,
            comment=command.comment,
            actor=actor,
            correlation_id=correlation_id,
        )
        self._save(objective)
        return objective

    # -- queries ----------------------------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        """What ``/readyz`` adds: whether the catalogue caught up with the log. It follows
        every commit, so it is behind only for the moment between a commit and its
        notification, or when it is stuck."""
        head = self.max_position()
        return {"catalogue": self.catalogue.position >= head}

    def in_kpi_catalogue(self, key: str) -> bool:
        """Whether the metrics service defined the KPI, as far as ``metrics.events`` told."""
        return CataloguedKPI.create_id(key) in self.repository

    def get_objective(self, objective_id: UUID) -> Objective:
        try:
            objective: Any = self.repository.get(objective_id)
        except AggregateNotFoundError:
            raise NotFound(f"no objective {objective_id}") from None
        if not isinstance(objective, Objective):
            raise NotFound(f"no objective {objective_id}")
        return objective

    def objective_as_of(self, objective_id: UUID, instant: datetime) -> Objective:
        """The objective as it was at ``instant`` (its definition, targets, weights and
        check-ins then), replayed from its events up to that instant."""
        objective = self.as_of(objective_id, instant)
        if not isinstance(objective, Objective):
            raise NotFound(f"no objective {objective_id} at {instant.isoformat()}")
        return objective

    def scores_as_of(self, objective_id: UUID, instant: datetime) -> ObjectiveScores | None:
        scores = self.as_of(ObjectiveScores.create_id(str(objective_id)), instant)
        return scores if isinstance(scores, ObjectiveScores) else None

    def scores(self, objective_id: UUID) -> ObjectiveScores | None:
        """The latest scores the alignment service published for the objective, if any."""
        try:
            found: ObjectiveScores = self.repository.get(
                ObjectiveScores.create_id(str(objective_id))
            )
            return found
        except AggregateNotFoundError:
            return None

    def history(self, objective_id: UUID) -> list[Any]:
        """The objective's domain events, oldest first."""
        events = list(self.events.get(objective_id))
        if not events:
            raise NotFound(f"no objective {objective_id}")
        return events

    # -- internals --------------------------------------------------------------------------

    def _warnings(self, definition: ObjectiveDefinition) -> list[str]:
        """Enforce the definition's rules (``RuleViolation``); returns the advice that does
        not block."""
        return check_definition(definition) + unknown_kpi_warnings(
            definition, self.in_kpi_catalogue
        )

    def _save(self, objective: Objective) -> None:
        try:
            self.save(objective)
        except IntegrityError:
            raise Conflict(
                f"objective {objective.id} was changed concurrently; read it again and retry"
            ) from None

    def _definition(
        self, command: ObjectiveCommand, objective_id: UUID | None, existing: Objective | None
    ) -> ObjectiveDefinition:
        """The definition the command sets, its references checked against the store."""
        return definition_of(
            command,
            objective_id,
            existing.definition if existing else None,
            self._parent_violations(command, objective_id),
        )

    def _parent_violations(
        self, command: ObjectiveCommand, objective_id: UUID | None
    ) -> list[Violation]:
        if command.parent_id is None:
            return []
        try:
            parent = self.get_objective(command.parent_id)
        except NotFound:
            return [
                Violation(
                    ("parent_id",),
                    "parent_not_found",
                    f"no objective {command.parent_id} to align to",
                )
            ]
        if parent.archived:
            return [
                Violation(("parent_id",), "parent_archived", f"objective {parent.id} is archived")
            ]
        if command.parent_key_result_id is not None and command.parent_key_result_id not in {
            kr.id for kr in parent.definition.key_results
        }:
            return [
                Violation(
                    ("parent_key_result_id",),
                    "parent_key_result_not_found",
                    f"objective {parent.id} has no key result {command.parent_key_result_id}",
                )
            ]
        if objective_id is not None and self._is_ancestor(objective_id, parent):
            return [
                Violation(
                    ("parent_id",),
                    "alignment_cycle",
                    "an objective cannot align to itself or to its own descendant",
                )
            ]
        return []

    def _is_ancestor(self, objective_id: UUID, start: Objective) -> bool:
        seen: set[str] = set()
        current: Objective | None = start
        while current is not None and str(current.id) not in seen:
            if current.id == objective_id:
                return True
            seen.add(str(current.id))
            parent_id = current.definition.parent_id
            current = self.get_objective(UUID(parent_id)) if parent_id else None
        return False
