"""Gaps: what needs action, computed from the alignment graph as a pure function.

The seeds: "if you are missing a KPI, you would want to put an OKR in place to close the gap",
and "set new OKRs to move the needle on stagnant KPIs". Each gap has a stable id (kind and
subject), so the service records a ``GapDetected`` when one opens and a ``GapResolved`` when
it closes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts import GapKind, Health, KeyResultKind, Level, ObjectiveDefinition, ObjectiveStatus

#: More active objectives than this for one owner in one period scatter the focus.
MAX_OBJECTIVES_PER_OWNER = 5
RECOMMENDED_KEY_RESULTS = range(1, 6)


@dataclass(frozen=True)
class Gap:
    kind: GapKind
    subject: str
    message: str
    owner: str | None = None
    period: str | None = None

    @property
    def gap_id(self) -> str:
        return f"{self.kind.value}:{self.subject}"


@dataclass(frozen=True)
class ObjectiveFacts:
    """What the gap rules need to know of an objective."""

    definition: ObjectiveDefinition
    #: Key results that have a value: a check-in, or a reading of their KPI in the period.
    with_data: frozenset[str]


@dataclass(frozen=True)
class KPIFacts:
    key: str
    health: Health | None
    last_arrival: datetime | None
    interval: timedelta
    #: Unhealthy without meaningful change over the stagnation window.
    stagnant: bool = False


def detect_gaps(
    objectives: Iterable[ObjectiveFacts], kpis: Iterable[KPIFacts], now: datetime
) -> dict[str, Gap]:
    """Every open gap, by gap id."""
    found: list[Gap] = []
    active = [o for o in objectives if o.definition.status is ObjectiveStatus.active]
    linked = {
        kr.kpi
        for o in active
        for kr in o.definition.key_results
        if kr.kind is KeyResultKind.kpi and kr.kpi
    }
    for objective in active:
        found += objective_gaps(objective)
    load = Counter(
        (o.definition.owner, o.definition.period.label) for o in active if o.definition.owner
    )
    for (owner, period), count in load.items():
        if count > MAX_OBJECTIVES_PER_OWNER:
            found.append(
                Gap(
                    GapKind.too_many_objectives,
                    f"{owner}@{period}",
                    f"{owner} owns {count} active objectives in {period}: at most "
                    f"{MAX_OBJECTIVES_PER_OWNER} keep the focus",
                    owner,
                    period,
                )
            )
    for kpi in kpis:
        if (kpi.health is Health.unhealthy or kpi.stagnant) and kpi.key not in linked:
            state = "stagnant" if kpi.stagnant else "unhealthy"
            found.append(
                Gap(
                    GapKind.kpi_unaddressed,
                    kpi.key,
                    f"KPI {kpi.key} is {state} and no active key result moves it: "
                    "set an OKR to move the needle",
                )
            )
        if kpi.last_arrival is not None and now - kpi.last_arrival > 2 * kpi.interval:
            found.append(
                Gap(
                    GapKind.stale_kpi,
                    kpi.key,
                    f"KPI {kpi.key} has had no reading since {kpi.last_arrival:%Y-%m-%d %H:%M} "
                    f"(expected every {kpi.interval})",
                )
            )
    return {gap.gap_id: gap for gap in found}


def objective_gaps(objective: ObjectiveFacts) -> list[Gap]:
    definition = objective.definition
    owner, period = definition.owner, definition.period.label
    found: list[Gap] = []
    if not (owner or "").strip():
        found.append(
            Gap(
                GapKind.objective_without_owner,
                definition.id,
                f"objective {definition.title!r} has no accountable owner",
                None,
                period,
            )
        )
    count = len(definition.key_results)
    if count not in RECOMMENDED_KEY_RESULTS:
        found.append(
            Gap(
                GapKind.kr_count_out_of_range,
                definition.id,
                f"objective {definition.title!r} has {count} key results (1 to 5, best 3 to 5)",
                owner,
                period,
            )
        )
    if definition.level is not Level.company and not definition.parent_id:
        found.append(
            Gap(
                GapKind.orphan_objective,
                definition.id,
                f"{definition.level.value} objective {definition.title!r} aligns to nothing",
                owner,
                period,
            )
        )
    for key_result in definition.key_results:
        if (
            key_result.kind in (KeyResultKind.metric, KeyResultKind.kpi)
            and key_result.id not in objective.with_data
        ):
            source = (
                f"no reading of KPI {key_result.kpi} in the period"
                if key_result.kind is KeyResultKind.kpi
                else "no check-in yet"
            )
            found.append(
                Gap(
                    GapKind.kr_without_data,
                    key_result.id,
                    f"key result {key_result.title!r}: {source}",
                    owner,
                    period,
                )
            )
    return found
