"""Objectives and their key results: the goal service's aggregate and its rules (no I/O).

An objective's definition is the contract's ``ObjectiveDefinition`` (the shape that travels on
``goal.events``); this module adds the rules a definition must satisfy to be accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from eventsourcing.domain import Aggregate, event

from contracts import (
    KeyResultDefinition,
    KeyResultKind,
    ObjectiveDefinition,
    ObjectiveStatus,
)
from services.shared.errors import Conflict, NotFound, RuleViolation, Violation

#: The seeds recommend 3 to 5 key results per objective; more is allowed, with a warning.
RECOMMENDED_KEY_RESULTS = range(3, 6)


def check_definition(definition: ObjectiveDefinition) -> list[str]:
    """Enforce the rules of an objective's definition.

    Raises ``RuleViolation`` listing every broken rule; returns warnings (advice that does not
    block, such as more than five key results).
    """
    violations: list[Violation] = []

    def broken(field: tuple[str | int, ...], rule: str, message: str) -> None:
        violations.append(Violation(field, rule, message))

    if not definition.title.strip():
        broken(("title",), "title_required", "an objective needs a title")
    if definition.owner is None or not definition.owner.strip():
        broken(("owner",), "owner_required", "an objective needs one accountable owner")
    if not definition.org_unit.strip():
        broken(("org_unit",), "org_unit_required", "an objective belongs to an org unit")
    if definition.parent_key_result_id and not definition.parent_id:
        broken(
            ("parent_id",),
            "parent_required",
            "aligning to a key result needs the parent objective's id too",
        )
    if not definition.key_results:
        broken(
            ("key_results",),
            "at_least_one_key_result",
            "an objective needs at least one key result",
        )
    elif not any(kr.weight > 0 for kr in definition.key_results):
        broken(
            ("key_results",),
            "positive_weight_required",
            "at least one key result must have a weight above 0",
        )
    for index, key_result in enumerate(definition.key_results):
        for field, rule, message in key_result_violations(key_result):
            broken(("key_results", index, field), rule, message)
    if violations:
        raise RuleViolation(violations)

    count = len(definition.key_results)
    if count > RECOMMENDED_KEY_RESULTS.stop - 1:
        return [f"{count} key results: 3 to 5 per objective keep the focus"]
    return []


def unknown_kpi_warnings(
    definition: ObjectiveDefinition, in_catalogue: Callable[[str], bool]
) -> list[str]:
    """A warning for each kpi key result whose KPI is not in the KPI catalogue: a typo would
    otherwise show only later, as a key result that never gets a reading."""
    return [
        f"key result {number} ({key_result.title!r}): KPI {key_result.kpi} is not in the "
        "KPI catalogue"
        for number, key_result in enumerate(definition.key_results, start=1)
        if key_result.kind is KeyResultKind.kpi
        and key_result.kpi
        and not in_catalogue(key_result.kpi)
    ]


def key_result_violations(key_result: KeyResultDefinition) -> list[tuple[str, str, str]]:
    """(field, rule, message) for each rule the key result breaks."""
    found: list[tuple[str, str, str]] = []
    if not key_result.title.strip():
        found.append(("title", "title_required", "a key result needs a title"))
    if key_result.kind in (KeyResultKind.metric, KeyResultKind.kpi):
        if key_result.baseline is None:
            found.append(
                (
                    "baseline",
                    "baseline_required",
                    f"a {key_result.kind} key result needs a baseline",
                )
            )
        if key_result.target is None:
            found.append(
                ("target", "target_required", f"a {key_result.kind} key result needs a target")
            )
        if key_result.baseline is not None and key_result.baseline == key_result.target:
            found.append(
                (
                    "target",
                    "baseline_equals_target",
                    "target must differ from baseline, or there is no progress to make",
                )
            )
    if key_result.kind is KeyResultKind.kpi and not key_result.kpi:
        found.append(("kpi", "kpi_required", "a kpi key result needs the key of its KPI"))
    if key_result.kind is not KeyResultKind.kpi:
        if key_result.kpi:
            found.append(("kpi", "kpi_only_for_kind_kpi", "only a kpi key result links a KPI"))
        if key_result.aggregation is not None:
            found.append(
                (
                    "aggregation",
                    "aggregation_only_for_kind_kpi",
                    "only a kpi key result aggregates readings",
                )
            )
    if key_result.checklist and key_result.kind is not KeyResultKind.milestone:
        found.append(
            (
                "checklist",
                "checklist_only_for_milestone",
                "only a milestone key result has a checklist",
            )
        )
    if len(set(key_result.checklist)) != len(key_result.checklist):
        found.append(("checklist", "checklist_items_unique", "checklist items must be unique"))
    return found


class Objective(Aggregate):
    """An objective with its key results and their latest check-ins.

    Every event records its ``actor`` and ``correlation_id``; the definition carried by
    ``Defined`` and ``Redefined`` is complete, so each maps to one ``ObjectiveSet``.
    """

    class Defined(Aggregate.Created):
        definition: dict[str, Any]
        actor: str
        correlation_id: str | None

    class Redefined(Aggregate.Event):
        definition: dict[str, Any]
        actor: str
        correlation_id: str | None

    class KeyResultCheckedIn(Aggregate.Event):
        key_result_id: str
        value: float | None
        done: bool | None
        checklist_done: list[str] | None
        confidence: int | None
        comment: str | None
        actor: str
        correlation_id: str | None

        def apply(self, aggregate: Any) -> None:
            # Applied here rather than in a decorated method: the check-in's time is this
            # event's timestamp, which a decorated method body cannot see.
            aggregate.check_ins[self.key_result_id] = {
                "value": self.value,
                "done": self.done,
                "checklist_done": self.checklist_done,
                "confidence": self.confidence,
                "comment": self.comment,
                "actor": self.actor,
                "at": self.timestamp.isoformat(),
            }
            aggregate.last_actor = self.actor

    class Archived(Aggregate.Event):
        reason: str | None
        actor: str
        correlation_id: str | None

    @event(Defined)
    def __init__(
        self, definition: dict[str, Any], actor: str, correlation_id: str | None = None
    ) -> None:
        self._set_definition(definition)
        #: key result id -> latest check-in (value, done, checklist_done, confidence, ...).
        self.check_ins: dict[str, dict[str, Any]] = {}
        self.last_actor = actor

    def _set_definition(self, definition: dict[str, Any]) -> None:
        self.definition = ObjectiveDefinition.model_validate(definition | {"id": str(self.id)})

    @property
    def archived(self) -> bool:
        return self.definition.status is ObjectiveStatus.archived

    def key_result(self, key_result_id: str) -> KeyResultDefinition:
        for key_result in self.definition.key_results:
            if key_result.id == key_result_id:
                return key_result
        raise NotFound(f"objective {self.id} has no key result {key_result_id}")

    def _require_active(self) -> None:
        if self.archived:
            raise Conflict(f"objective {self.id} is archived")

    def redefine(
        self, definition: ObjectiveDefinition, actor: str, correlation_id: str | None = None
    ) -> None:
        self._require_active()
        self._redefined(definition.model_dump(mode="json", exclude={"id"}), actor, correlation_id)

    @event(Redefined)
    def _redefined(
        self, definition: dict[str, Any], actor: str, correlation_id: str | None
    ) -> None:
        self._set_definition(definition)
        kept = {key_result.id for key_result in self.definition.key_results}
        self.check_ins = {kr: check_in for kr, check_in in self.check_ins.items() if kr in kept}
        self.last_actor = actor

    def check_in(
        self,
        key_result_id: str,
        *,
        actor: str,
        value: float | None = None,
        done: bool | None = None,
        checklist_done: list[str] | None = None,
        confidence: int | None = None,
        comment: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Record progress on a key result, after checking it fits the key result's kind."""
        self._require_active()
        key_result = self.key_result(key_result_id)
        problems = check_in_violations(key_result, value, done, checklist_done)
        if problems:
            raise RuleViolation([Violation((f,), rule, msg) for f, rule, msg in problems])
        self.trigger_event(
            self.KeyResultCheckedIn,
            key_result_id=key_result_id,
            value=value,
            done=done,
            checklist_done=checklist_done,
            confidence=confidence,
            comment=comment,
            actor=actor,
            correlation_id=correlation_id,
        )

    def archive(self, reason: str | None, actor: str, correlation_id: str | None = None) -> None:
        self._require_active()
        self._archived(reason, actor, correlation_id)

    @event(Archived)
    def _archived(self, reason: str | None, actor: str, correlation_id: str | None) -> None:
        self.definition = self.definition.model_copy(update={"status": ObjectiveStatus.archived})
        self.last_actor = actor


def check_in_violations(
    key_result: KeyResultDefinition,
    value: float | None,
    done: bool | None,
    checklist_done: list[str] | None,
) -> list[tuple[str, str, str]]:
    """(field, rule, message) for a check-in that does not fit its key result's kind."""
    kind = key_result.kind
    found: list[tuple[str, str, str]] = []
    if value is not None and kind is not KeyResultKind.metric:
        found.append(
            (
                "value",
                "value_only_for_metric",
                f"a {kind} key result takes no value by check-in"
                + (": its value comes from its KPI" if kind is KeyResultKind.kpi else ""),
            )
        )
    if (done is not None or checklist_done is not None) and kind is not KeyResultKind.milestone:
        field = "done" if done is not None else "checklist_done"
        found.append((field, "done_only_for_milestone", "only a milestone is done or not"))
    if checklist_done is not None and kind is KeyResultKind.milestone:
        if not key_result.checklist:
            found.append(("checklist_done", "no_checklist", "this milestone has no checklist"))
        unknown = sorted(set(checklist_done) - set(key_result.checklist))
        if unknown and key_result.checklist:
            found.append(
                (
                    "checklist_done",
                    "unknown_checklist_item",
                    f"not on the checklist: {', '.join(unknown)}",
                )
            )
    return found


SCORES_NAMESPACE = uuid.UUID("9b3c6d1e-2f4a-4b8c-a1d5-6e7f8091a2b3")


class ObjectiveScores(Aggregate):
    """The latest scores of one objective as the alignment service published them: a read
    model kept in the goal service's own log (so it rebuilds with the rest), never
    republished on ``goal.events``."""

    @staticmethod
    def create_id(objective_id: str) -> uuid.UUID:
        return uuid.uuid5(SCORES_NAMESPACE, objective_id)

    class Started(Aggregate.Created):
        objective_id: str

    # The events goal stores in volume apply themselves, not through decorated methods whose
    # replay matches each event's fields to the method's parameters (a faster full replay).
    class ObjectiveScoreNoted(Aggregate.Event):
        score: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.objective = self.score

    class KeyResultScoreNoted(Aggregate.Event):
        key_result_id: str
        score: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.key_results[self.key_result_id] = self.score

    @event(Started)
    def __init__(self, objective_id: str) -> None:
        self.objective_id = objective_id
        self.objective: dict[str, Any] | None = None
        self.key_results: dict[str, dict[str, Any]] = {}

    def note_objective(self, score: dict[str, Any]) -> None:
        self.trigger_event(self.ObjectiveScoreNoted, score=score)

    def note_key_result(self, key_result_id: str, score: dict[str, Any]) -> None:
        self.trigger_event(self.KeyResultScoreNoted, key_result_id=key_result_id, score=score)


KPI_NAMESPACE = uuid.UUID("188c178b-9032-4c61-a2df-86b4d3f4b7ba")


class CataloguedKPI(Aggregate):
    """A KPI the metrics service defined (a ``KPIDefined`` on ``metrics.events``), kept in
    the goal service's own log so that a restart or rebuild still knows it: what a kpi key
    result is checked against. Its key is all that is needed; redefinitions change nothing."""

    @staticmethod
    def create_id(key: str) -> uuid.UUID:
        return uuid.uuid5(KPI_NAMESPACE, key)

    class Noted(Aggregate.Created):
        key: str

    @event(Noted)
    def __init__(self, key: str) -> None:
        self.key = key


__all__ = [
    "RECOMMENDED_KEY_RESULTS",
    "CataloguedKPI",
    "Objective",
    "ObjectiveScores",
    "check_definition",
    "check_in_violations",
    "key_result_violations",
    "unknown_kpi_warnings",
]
