"""Gaps: what needs action, computed from the alignment graph as a pure function.

The seeds: "if you are missing a KPI, you would want to put an OKR in place to close the gap",
and "set new OKRs to move the needle on stagnant KPIs". Each gap has a stable id (kind and
subject), so the service records a ``GapDetected`` when one opens and a ``GapResolved`` when
it closes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contracts import GapKind, Health, KeyResultKind, Level, ObjectiveDefinition, ObjectiveStatus
from services.alignment.domain import KPITrack, ObjectiveTrack
from services.shared.kpi_health import is_stagnant, meaningful_change, stagnation_holds_until

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
    """What the gap rules need to know of a KPI the metrics service defined."""

    key: str
    health: Health | None
    last_arrival: datetime | None
    interval: timedelta
    #: Unhealthy without meaningful change over the stagnation window.
    stagnant: bool = False
    #: Who answers for the KPI: its gaps are theirs.
    owner: str | None = None


def objective_facts(track: ObjectiveTrack) -> ObjectiveFacts:
    return ObjectiveFacts(
        track.definition,
        frozenset(
            kr.id
            for kr in track.definition.key_results
            if track.check_ins.get(kr.id, {}).get("value") is not None
            or (kr.id in track.stats and track.stats[kr.id].count > 0)
        ),
    )


def kpi_facts(
    kpi: KPITrack, now: datetime, stagnation_window: timedelta, stagnation_tolerance: float
) -> tuple[KPIFacts, datetime | None]:
    """The facts of a defined KPI at ``now``, and the instant up to which they hold (None: for
    ever): stagnation depends on the instant too (``stagnation_holds_until``)."""
    assert kpi.definition is not None
    facts = KPIFacts(
        kpi.key,
        kpi.health,
        kpi.last_arrival,
        timedelta(seconds=kpi.definition.interval_seconds),
        stagnant=is_stagnant(
            kpi.streak,
            now,
            stagnation_window,
            stagnation_tolerance,
            meaningful_change(kpi.definition),
        ),
        owner=kpi.definition.owner,
    )
    return facts, stagnation_holds_until(kpi.streak, now, stagnation_window)


def detect_gaps(
    objectives: Iterable[ObjectiveFacts], kpis: Iterable[KPIFacts], now: datetime
) -> dict[str, Gap]:
    """Every open gap, by gap id. ``kpis`` are the KPIs defined: the catalogue."""
    active = [o for o in objectives if o.definition.status is ObjectiveStatus.active]
    kpis = list(kpis)
    defined = {kpi.key for kpi in kpis}
    linked = linked_kpis(active)
    found = [gap for o in active for gap in objective_gaps(o, defined)] + owner_load_gaps(active)
    found += [gap for kpi in kpis for gap in kpi_gaps(kpi, kpi.key in linked, now)]
    return {gap.gap_id: gap for gap in found}


def linked_kpis(active: Iterable[ObjectiveFacts]) -> set[str]:
    """The KPIs some active key result moves."""
    return {
        kr.kpi
        for o in active
        for kr in o.definition.key_results
        if kr.kind is KeyResultKind.kpi and kr.kpi
    }


def owner_load_gaps(active: Iterable[ObjectiveFacts]) -> list[Gap]:
    load = Counter(
        (o.definition.owner, o.definition.period.label) for o in active if o.definition.owner
    )
    return [
        Gap(
            GapKind.too_many_objectives,
            f"{owner}@{period}",
            f"{owner} owns {count} active objectives in {period}: at most "
            f"{MAX_OBJECTIVES_PER_OWNER} keep the focus",
            owner,
            period,
        )
        for (owner, period), count in load.items()
        if count > MAX_OBJECTIVES_PER_OWNER
    ]


def kpi_gaps(kpi: KPIFacts, linked: bool, now: datetime) -> list[Gap]:
    found = []
    if (kpi.health is Health.unhealthy or kpi.stagnant) and not linked:
        state = "stagnant" if kpi.stagnant else "unhealthy"
        found.append(
            Gap(
                GapKind.kpi_unaddressed,
                kpi.key,
                f"KPI {kpi.key} is {state} and no active key result moves it: "
                "set an OKR to move the needle",
                kpi.owner,
            )
        )
    if kpi.last_arrival is not None and now - kpi.last_arrival > 2 * kpi.interval:
        found.append(
            Gap(
                GapKind.stale_kpi,
                kpi.key,
                f"KPI {kpi.key} has had no reading since {kpi.last_arrival:%Y-%m-%d %H:%M} "
                f"(expected every {kpi.interval})",
                kpi.owner,
            )
        )
    return found


def kpi_gaps_hold_until(kpi: KPIFacts, now: datetime) -> datetime | None:
    """Up to which instant ``kpi_gaps`` of these facts answers as it does at ``now``, for
    every instant from ``now`` on (None: for ever). Only staleness depends on the time."""
    if kpi.last_arrival is None:
        return None
    stale_after = kpi.last_arrival + 2 * kpi.interval
    return stale_after if now <= stale_after else None


def gap_changes(
    open_gaps: Mapping[str, Mapping[str, Any]], gaps: Mapping[str, Gap], now: datetime
) -> tuple[list[tuple[Gap, datetime]], list[str]]:
    """What moves the open gaps (``GapBoard.open``) to ``gaps``: the gaps to record as
    detected, each with the instant it has been open since, and the ids of those to resolve,
    both by id. A gap still open whose owner, period or message changed (a KPI or objective
    given to someone else, a KPI defined at last) is detected again, as it is now, so that the
    published gaps stay true; it keeps its age."""
    detected = [(gap, now) for gap_id, gap in gaps.items() if gap_id not in open_gaps]
    for gap_id, was in open_gaps.items():
        gap = gaps.get(gap_id)
        if gap is not None and (was["owner"], was["period"], was["message"]) != (
            gap.owner,
            gap.period,
            gap.message,
        ):
            detected.append((gap, datetime.fromisoformat(was["since"])))
    resolved = sorted(gap_id for gap_id in open_gaps if gap_id not in gaps)
    return sorted(detected, key=lambda item: item[0].gap_id), resolved


class GapMemo:
    """``detect_gaps`` for a graph in which few facts change from one call to the next.

    Facts are immutable: whatever changes comes as a new facts object. So each objective's
    gaps are kept with the facts object they came from (all of them until the catalogue of
    KPIs changes, which they name), the cascade's (KPIs linked, owners' load) with the
    definitions of the active objectives, and each KPI's with its facts, its being linked,
    and the instant up to which time alone cannot change them. The answer is the one of
    ``detect_gaps`` (a hypothesis test holds them equal).
    """

    def __init__(self) -> None:
        self._objectives: dict[str, tuple[ObjectiveFacts, list[Gap]]] = {}
        self._defined: frozenset[str] = frozenset()
        self._cascade: tuple[list[ObjectiveDefinition], set[str], list[Gap]] = ([], set(), [])
        self._kpis: dict[str, tuple[KPIFacts, bool, datetime, datetime | None, list[Gap]]] = {}

    def detect(
        self, objectives: Iterable[ObjectiveFacts], kpis: Iterable[KPIFacts], now: datetime
    ) -> dict[str, Gap]:
        active = [o for o in objectives if o.definition.status is ObjectiveStatus.active]
        kpis = list(kpis)
        defined = frozenset(kpi.key for kpi in kpis)
        if defined != self._defined:
            self._objectives.clear()
            self._defined = defined
        linked, load = self._cascade_of(active)
        found: dict[str, Gap] = {gap.gap_id: gap for gap in load}
        for facts in active:
            for gap in self._objective(facts):
                found[gap.gap_id] = gap
        for kpi in kpis:
            for gap in self._kpi(kpi, kpi.key in linked, now):
                found[gap.gap_id] = gap
        return found

    def _cascade_of(self, active: list[ObjectiveFacts]) -> tuple[set[str], list[Gap]]:
        definitions, linked, load = self._cascade
        if len(definitions) != len(active) or any(
            kept is not facts.definition for kept, facts in zip(definitions, active, strict=True)
        ):
            definitions = [facts.definition for facts in active]
            linked, load = linked_kpis(active), owner_load_gaps(active)
            self._cascade = (definitions, linked, load)
        return linked, load

    def _objective(self, facts: ObjectiveFacts) -> list[Gap]:
        kept = self._objectives.get(facts.definition.id)
        if kept is not None and kept[0] is facts:
            return kept[1]
        gaps = objective_gaps(facts, self._defined)
        self._objectives[facts.definition.id] = (facts, gaps)
        return gaps

    def _kpi(self, kpi: KPIFacts, linked: bool, now: datetime) -> list[Gap]:
        kept = self._kpis.get(kpi.key)
        if kept is not None:
            facts, was_linked, since, until, gaps = kept
            if (
                facts is kpi
                and was_linked == linked
                and since <= now
                and (until is None or now <= until)
            ):
                return gaps
        gaps = kpi_gaps(kpi, linked, now)
        self._kpis[kpi.key] = (kpi, linked, now, kpi_gaps_hold_until(kpi, now), gaps)
        return gaps


def objective_gaps(objective: ObjectiveFacts, defined_kpis: Collection[str]) -> list[Gap]:
    """The gaps of one active objective; ``defined_kpis`` are the keys in the catalogue."""
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
            if key_result.kind is not KeyResultKind.kpi:
                source = "no check-in yet"
            elif key_result.kpi not in defined_kpis:
                source = f"KPI {key_result.kpi} is not defined in the KPI catalogue"
            else:
                source = f"no reading of KPI {key_result.kpi} in the period"
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
