"""Errors that commands raise and every service's HTTP layer answers the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (path of field names and indexes), which rule, and why."""

    field: tuple[str | int, ...]
    rule: str
    message: str


class RuleViolation(ValueError):
    """Well-formed input that breaks domain rules: answered 422, naming each field and rule."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__(
            "; ".join(f"{'.'.join(map(str, v.field))}: {v.message}" for v in violations)
        )
        self.violations = list(violations)

    @classmethod
    def single(cls, field: Sequence[str | int], rule: str, message: str) -> RuleViolation:
        return cls([Violation(tuple(field), rule, message)])


class NotFound(LookupError):
    """An unknown id: answered 404."""


class Conflict(ValueError):
    """A command the current state does not allow, or a concurrent change: answered 409."""
