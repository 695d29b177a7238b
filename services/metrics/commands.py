"""What people send to define KPIs: the command (the body of ``PUT /kpis/{key}``), and how it
becomes the definition the metrics service stores. Readings come as ``contracts.KPIReading``."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from contracts import Direction, Indicator, KPIDefinition
from services.metrics.domain import meets, parse_interval
from services.shared.errors import RuleViolation, Violation
from services.shared.http_parameters import LINE


class KPICommand(BaseModel):
    """The body of ``PUT /kpis/{key}``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # Strict numbers (JSON false is no warning) and names of one line.
    name: str = Field(min_length=1, max_length=200, pattern=LINE)
    unit: str | None = Field(default=None, max_length=32, pattern=LINE)
    direction: Direction
    target: StrictFloat
    warning: StrictFloat | None = None
    interval: str = Field(
        default="P1D", max_length=64, description="Expected update interval (ISO-8601)."
    )
    indicator: Indicator = Indicator.lagging
    owner: str | None = Field(default=None, max_length=200, pattern=LINE)
    description: str = Field(default="", max_length=5000)


def definition_of(key: str, command: KPICommand) -> KPIDefinition:
    """The definition a command sets for the KPI ``key``; raises ``RuleViolation`` with every
    violation found."""
    violations: list[Violation] = []
    interval = timedelta(days=1)
    try:
        interval = parse_interval(command.interval)
    except ValueError as error:
        violations.append(Violation(("interval",), "interval_invalid", str(error)))
    if (
        command.warning is not None
        and meets(command.warning, command.target, command.direction)
        and (command.warning != command.target)
    ):
        violations.append(
            Violation(
                ("warning",),
                "warning_beyond_target",
                f"with {command.direction.value}, the warning threshold lies between "
                "unhealthy and the target, not beyond the target",
            )
        )
    try:
        definition = KPIDefinition(
            key=key, interval_seconds=interval.total_seconds(), **command.model_dump()
        )
    except ValueError as error:
        violations.append(Violation(("key",), "key_invalid", str(error).splitlines()[-1]))
    if violations:
        raise RuleViolation(violations)
    return definition
