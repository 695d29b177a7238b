"""What people send to change objectives: the commands (the bodies of the HTTP API), and how
an objective's command becomes the definition the domain checks and stores: its period
parsed, new key results given ids, read-only fields left as they are."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from contracts import (
    KPI_KEY_PATTERN,
    Aggregation,
    Cadence,
    KeyResultDefinition,
    KeyResultKind,
    Level,
    ObjectiveDefinition,
    ObjectiveStatus,
    ObjectiveType,
    Period,
    parse_period,
)
from services.shared.errors import RuleViolation, Violation
from services.shared.http_parameters import LINE, Line


class PeriodRange(BaseModel):
    """A period by its dates. ``label`` and ``cadence`` are what ``GET`` returns with them:
    accepted so that a read period can be written back, and checked against the dates."""

    model_config = ConfigDict(extra="forbid")
    start: date
    end: date
    label: str | None = Field(default=None, max_length=32)
    cadence: Cadence | None = None


# Numbers and booleans in commands are strict: JSON true is no weight, "1" no target.


class KeyResultCommand(BaseModel):
    """A key result as people write it; ``id`` only when redefining an existing one."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str | None = Field(default=None, max_length=64, pattern=LINE)
    title: str = Field(min_length=1, max_length=300, pattern=LINE)
    kind: KeyResultKind
    unit: str | None = Field(default=None, max_length=32, pattern=LINE)
    baseline: StrictFloat | None = None
    target: StrictFloat | None = None
    weight: StrictFloat = Field(default=1.0, ge=0, le=1000)
    kpi: str | None = Field(default=None, pattern=KPI_KEY_PATTERN)
    aggregation: Aggregation | None = None
    checklist: list[Line] = Field(default_factory=list, max_length=100)


class ObjectiveCommand(BaseModel):
    """The body of ``POST /objectives`` and ``PUT /objectives/{id}``. It takes the
    ``objective`` that ``GET`` returns as it is: a client reads, changes a field, writes back."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: UUID | None = Field(
        default=None,
        description="Read-only: the service chooses it. Accepted on PUT when it is the "
        "objective's own id, as GET returns it.",
    )
    status: ObjectiveStatus | None = Field(
        default=None,
        description="Read-only: archive with POST /objectives/{id}/archive. Accepted when it "
        "is the objective's current status, as GET returns it.",
    )
    title: str = Field(min_length=1, max_length=300, pattern=LINE)
    description: str = Field(default="", max_length=5000)
    # Required here (not only by the domain rule) so that a body missing several fields is
    # told about all of them at once.
    owner: str = Field(
        max_length=200, pattern=LINE, description="One accountable owner: who answers for it."
    )
    contributors: list[Line] = Field(default_factory=list, max_length=100)
    org_unit: str = Field(min_length=1, max_length=200, pattern=LINE)
    level: Level
    period: Annotated[str, Field(max_length=32)] | PeriodRange = Field(
        description='"2026", "2026-Q4", "2026-11", or {"start": date, "end": date} (with '
        "the label and cadence GET returns, when they match the dates)"
    )
    type: ObjectiveType = ObjectiveType.committed
    weight: StrictFloat = Field(default=1.0, ge=0, le=1000)
    parent_id: UUID | None = None
    parent_key_result_id: str | None = Field(default=None, max_length=64, pattern=LINE)
    key_results: list[KeyResultCommand] = Field(max_length=50)


class CheckInCommand(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    value: StrictFloat | None = None
    done: StrictBool | None = None
    checklist_done: list[Line] | None = Field(default=None, max_length=100)
    confidence: StrictInt | None = Field(default=None, ge=0, le=10)
    comment: str | None = Field(default=None, max_length=2000)


class ArchiveCommand(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


def definition_of(
    command: ObjectiveCommand,
    objective_id: UUID | None,
    existing: ObjectiveDefinition | None,
    broken_references: Sequence[Violation] = (),
) -> ObjectiveDefinition:
    """The full definition a command sets for a new objective (``existing`` None) or for
    ``existing``. Raises ``RuleViolation`` with every violation found, followed by the
    ``broken_references`` the caller found (the parent, which only the store knows)."""
    violations = _read_only_violations(command, objective_id, existing)
    period: Period | None = None
    try:
        period = _period(command.period)
    except RuleViolation as broken:
        violations += broken.violations
    key_results, broken_key_results = _key_results(command, existing)
    violations += broken_key_results
    violations += broken_references
    if violations or period is None:  # a period that did not parse left a violation
        raise RuleViolation(violations)
    return ObjectiveDefinition(
        id=str(objective_id or uuid.UUID(int=0)),
        title=command.title,
        description=command.description,
        owner=command.owner,
        contributors=command.contributors,
        org_unit=command.org_unit,
        level=command.level,
        period=period,
        type=command.type,
        weight=command.weight,
        parent_id=str(command.parent_id) if command.parent_id else None,
        parent_key_result_id=command.parent_key_result_id,
        key_results=key_results,
    )


def _key_results(
    command: ObjectiveCommand, existing: ObjectiveDefinition | None
) -> tuple[list[KeyResultDefinition], list[Violation]]:
    """The command's key results with their ids: those given must be the existing key
    results' own, once each; those without one are new and get one."""
    known_ids = {kr.id for kr in existing.key_results} if existing else set()
    key_results = []
    violations = []
    given_ids: set[str] = set()
    for index, key_result in enumerate(command.key_results):
        if key_result.id is not None and key_result.id in given_ids:
            violations.append(
                Violation(
                    ("key_results", index, "id"),
                    "duplicate_key_result_id",
                    f"key result {key_result.id} appears twice",
                )
            )
        if key_result.id is not None:
            given_ids.add(key_result.id)
        if key_result.id is not None and key_result.id not in known_ids:
            violations.append(
                Violation(
                    ("key_results", index, "id"),
                    "unknown_key_result",
                    f"objective has no key result {key_result.id}; omit id to add one",
                )
            )
        fields = key_result.model_dump(exclude={"id"})
        if key_result.kind is KeyResultKind.kpi and key_result.aggregation is None:
            fields["aggregation"] = Aggregation.latest
        key_results.append(KeyResultDefinition(id=key_result.id or str(uuid.uuid4()), **fields))
    return key_results, violations


def _period(given: str | PeriodRange) -> Period:
    """The period a command names: by label, or by dates (with the label and cadence that
    ``GET`` returned, which must name the same dates)."""
    try:
        if isinstance(given, str):
            return parse_period(given)
        period = parse_period({"start": given.start, "end": given.end})
    except ValueError as error:
        raise RuleViolation.single(("period",), "period_invalid", str(error)) from None
    if given.label is not None and given.label != period.label:
        try:
            labelled = parse_period(given.label)
        except ValueError:
            labelled = None
        if labelled is None or (labelled.start, labelled.end) != (period.start, period.end):
            raise RuleViolation.single(
                ("period", "label"),
                "period_mismatch",
                f"the label {given.label!r} does not name {period.start}..{period.end}; "
                "send the label or the dates alone",
            )
        period = labelled
    if given.cadence is not None and given.cadence is not period.cadence:
        raise RuleViolation.single(
            ("period", "cadence"),
            "period_mismatch",
            f"{period.start}..{period.end} is {period.cadence.value}, not {given.cadence.value}",
        )
    return period


def _read_only_violations(
    command: ObjectiveCommand, objective_id: UUID | None, existing: ObjectiveDefinition | None
) -> list[Violation]:
    """``id`` and ``status`` may come back as ``GET`` gave them, never changed."""
    violations = []
    if command.id is not None and command.id != objective_id:
        violations.append(
            Violation(
                ("id",),
                "read_only",
                "the service chooses an objective's id: leave it out"
                if objective_id is None
                else f"this is objective {objective_id}, not {command.id}",
            )
        )
    status = existing.status if existing else ObjectiveStatus.active
    if command.status is not None and command.status is not status:
        violations.append(
            Violation(
                ("status",),
                "read_only",
                f"the objective is {status.value}; archive with POST /objectives/{{id}}/archive",
            )
        )
    return violations
