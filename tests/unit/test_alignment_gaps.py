"""Gaps (docs/architecture.md, "Gaps"): what needs action, computed from the alignment graph
as a pure function. Each kind is shown detected and resolved, on the seed articles' examples:
"if you are missing a KPI, you would want to put an OKR in place to close the gap"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import (
    Aggregation,
    GapKind,
    Health,
    KeyResultDefinition,
    KeyResultKind,
    Level,
    ObjectiveDefinition,
    ObjectiveStatus,
    parse_period,
)
from services.alignment.domain import KPITrack, ObjectiveTrack, to_micros
from services.alignment.gaps import (
    Gap,
    GapMemo,
    KPIFacts,
    ObjectiveFacts,
    detect_gaps,
    gap_changes,
    kpi_gaps_hold_until,
)
from services.alignment.gaps import kpi_facts as facts_of_kpi
from services.alignment.gaps import objective_facts as facts_of_objective
from services.alignment.scoring import ReadingRef, WindowStats

NOW = datetime(2026, 11, 16, 9, 30, tzinfo=UTC)
WEEK = timedelta(days=7)

# -- builders: the seed articles' examples ----------------------------------------------------


def kpi_kr(
    key_result_id: str, kpi: str, title: str = "Raise NPS from 30 to 45"
) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=key_result_id,
        title=title,
        kind=KeyResultKind.kpi,
        baseline=30.0,
        target=45.0,
        kpi=kpi,
        aggregation=Aggregation.latest,
    )


def metric_kr(key_result_id: str, title: str = "Reduce churn from 8% to 5%") -> KeyResultDefinition:
    return KeyResultDefinition(
        id=key_result_id, title=title, kind=KeyResultKind.metric, baseline=8.0, target=5.0
    )


def milestone_kr(key_result_id: str) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=key_result_id,
        title="Launch a loyalty programme",
        kind=KeyResultKind.milestone,
        checklist=["design", "pilot", "roll out"],
    )


def rollup_kr(key_result_id: str) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=key_result_id, title="Teams reach their loyalty goals", kind=KeyResultKind.rollup
    )


def objective(
    objective_id: str = "obj-loyalty",
    *,
    title: str = "Improve customer loyalty",
    owner: str | None = "alice",
    level: Level = Level.company,
    period: str = "2026-Q4",
    parent_id: str | None = None,
    status: ObjectiveStatus = ObjectiveStatus.active,
    key_results: list[KeyResultDefinition] | None = None,
    with_data: Iterable[str] | None = None,
) -> ObjectiveFacts:
    """An objective whose key results all have data unless ``with_data`` says otherwise."""
    results = (
        key_results
        if key_results is not None
        else [kpi_kr(f"{objective_id}-kr", "net_promoter_score")]
    )
    definition = ObjectiveDefinition(
        id=objective_id,
        title=title,
        owner=owner,
        org_unit="customer-success",
        level=level,
        period=parse_period(period),
        parent_id=parent_id,
        status=status,
        key_results=results,
    )
    data = frozenset(with_data if with_data is not None else (kr.id for kr in results))
    return ObjectiveFacts(definition=definition, with_data=data)


def kpi(
    key: str = "net_promoter_score",
    *,
    health: Health | None = Health.healthy,
    last_arrival: datetime | None = NOW - timedelta(days=1),
    interval: timedelta = WEEK,
    owner: str | None = None,
) -> KPIFacts:
    return KPIFacts(
        key=key, health=health, last_arrival=last_arrival, interval=interval, owner=owner
    )


LOYALTY = objective()
NPS = kpi()
TURNOVER_UNHEALTHY = kpi("employee_turnover_rate", health=Health.unhealthy)


def retention(
    *, status: ObjectiveStatus = ObjectiveStatus.active, kind: KeyResultKind = KeyResultKind.kpi
) -> ObjectiveFacts:
    """ "Improve employee retention", department level under the loyalty objective."""
    key_result = (
        kpi_kr("kr-turnover", "employee_turnover_rate", "Cut turnover from 20% to 12%")
        if kind is KeyResultKind.kpi
        else metric_kr("kr-turnover", "Cut turnover from 20% to 12%")
    )
    return objective(
        "obj-retention",
        title="Improve employee retention",
        owner="hr-lead",
        level=Level.department,
        parent_id="obj-loyalty",
        status=status,
        key_results=[key_result],
    )


def kinds(gaps: Mapping[str, object]) -> set[str]:
    return {gap_id.split(":", 1)[0] for gap_id in gaps}


# -- a healthy alignment graph has no gap ------------------------------------------------------


def test_well_formed_graph_has_no_gaps() -> None:
    assert detect_gaps([LOYALTY, retention()], [NPS, TURNOVER_UNHEALTHY], NOW) == {}
    assert detect_gaps([], [], NOW) == {}


# -- kpi_unaddressed ---------------------------------------------------------------------------


def test_unhealthy_kpi_without_key_result_is_unaddressed() -> None:
    gaps = detect_gaps([LOYALTY], [NPS, TURNOVER_UNHEALTHY], NOW)
    assert set(gaps) == {"kpi_unaddressed:employee_turnover_rate"}
    gap = gaps["kpi_unaddressed:employee_turnover_rate"]
    assert gap.kind is GapKind.kpi_unaddressed
    assert gap.subject == "employee_turnover_rate"
    assert "employee_turnover_rate" in gap.message


def test_linking_a_key_result_to_the_kpi_resolves_kpi_unaddressed() -> None:
    before = detect_gaps([LOYALTY], [TURNOVER_UNHEALTHY], NOW)
    after = detect_gaps([LOYALTY, retention()], [TURNOVER_UNHEALTHY], NOW)
    assert "kpi_unaddressed:employee_turnover_rate" in before
    assert "kpi_unaddressed:employee_turnover_rate" not in after


def test_archived_objectives_key_result_does_not_address_a_kpi() -> None:
    archived = retention(status=ObjectiveStatus.archived)
    gaps = detect_gaps([LOYALTY, archived], [TURNOVER_UNHEALTHY], NOW)
    assert set(gaps) == {"kpi_unaddressed:employee_turnover_rate"}


def test_metric_key_result_does_not_address_a_kpi() -> None:
    """Only a kpi-kind key result moves a KPI: a metric with a similar title does not."""
    gaps = detect_gaps([LOYALTY, retention(kind=KeyResultKind.metric)], [TURNOVER_UNHEALTHY], NOW)
    assert set(gaps) == {"kpi_unaddressed:employee_turnover_rate"}


def test_key_result_on_another_kpi_does_not_address_it() -> None:
    unhealthy_nps = kpi(health=Health.unhealthy)
    gaps = detect_gaps([retention()], [unhealthy_nps, TURNOVER_UNHEALTHY], NOW)
    assert set(gaps) == {"kpi_unaddressed:net_promoter_score"}


@pytest.mark.parametrize("health", [Health.healthy, Health.warning, None])
def test_kpi_that_is_not_unhealthy_needs_no_key_result(health: Health | None) -> None:
    assert detect_gaps([], [kpi("employee_turnover_rate", health=health)], NOW) == {}


# -- kr_without_data -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_result",
    [kpi_kr("kr-nps", "net_promoter_score"), metric_kr("kr-churn")],
    ids=["kpi", "metric"],
)
def test_key_result_without_value_has_no_data(key_result: KeyResultDefinition) -> None:
    facts = objective(key_results=[key_result], with_data=[])
    gaps = detect_gaps([facts], [NPS], NOW)
    gap_id = f"kr_without_data:{key_result.id}"
    assert set(gaps) == {gap_id}
    assert gaps[gap_id].kind is GapKind.kr_without_data
    assert gaps[gap_id].subject == key_result.id
    assert gaps[gap_id].owner == "alice"
    assert gaps[gap_id].period == "2026-Q4"


@pytest.mark.parametrize(
    "key_result",
    [kpi_kr("kr-nps", "net_promoter_score"), metric_kr("kr-churn")],
    ids=["kpi", "metric"],
)
def test_check_in_or_reading_resolves_kr_without_data(key_result: KeyResultDefinition) -> None:
    without = objective(key_results=[key_result], with_data=[])
    with_value = objective(key_results=[key_result], with_data=[key_result.id])
    assert f"kr_without_data:{key_result.id}" in detect_gaps([without], [NPS], NOW)
    assert detect_gaps([with_value], [NPS], NOW) == {}


def test_a_key_result_on_a_kpi_outside_the_catalogue_says_the_kpi_is_not_defined() -> None:
    facts = objective(key_results=[kpi_kr("kr-deals", "typo_kpi", "Close deals")], with_data=[])
    gap = detect_gaps([facts], [NPS], NOW)["kr_without_data:kr-deals"]
    assert (
        gap.message == "key result 'Close deals': KPI typo_kpi is not defined in the KPI catalogue"
    )
    defined = detect_gaps([facts], [NPS, kpi("typo_kpi")], NOW)["kr_without_data:kr-deals"]
    assert defined.message == "key result 'Close deals': no reading of KPI typo_kpi in the period"


def test_only_the_key_results_without_data_are_reported() -> None:
    facts = objective(
        key_results=[kpi_kr("kr-nps", "net_promoter_score"), metric_kr("kr-churn")],
        with_data=["kr-nps"],
    )
    assert set(detect_gaps([facts], [NPS], NOW)) == {"kr_without_data:kr-churn"}


def test_milestone_and_rollup_key_results_never_lack_data() -> None:
    facts = objective(key_results=[milestone_kr("kr-launch"), rollup_kr("kr-teams")], with_data=[])
    assert detect_gaps([facts], [], NOW) == {}


def test_archived_objective_key_result_without_data_is_no_gap() -> None:
    archived = objective(
        key_results=[metric_kr("kr-churn")], with_data=[], status=ObjectiveStatus.archived
    )
    assert detect_gaps([archived], [], NOW) == {}


# -- objective_without_owner -------------------------------------------------------------------


@pytest.mark.parametrize("owner", [None, "", "   "])
def test_objective_without_owner(owner: str | None) -> None:
    gaps = detect_gaps([objective(owner=owner)], [NPS], NOW)
    assert set(gaps) == {"objective_without_owner:obj-loyalty"}
    gap = gaps["objective_without_owner:obj-loyalty"]
    assert gap.kind is GapKind.objective_without_owner
    assert gap.subject == "obj-loyalty"
    assert gap.owner is None
    assert gap.period == "2026-Q4"


def test_assigning_an_owner_resolves_objective_without_owner() -> None:
    assert "objective_without_owner:obj-loyalty" in detect_gaps([objective(owner=None)], [], NOW)
    assert detect_gaps([objective(owner="alice")], [], NOW) == {}


# -- kr_count_out_of_range -----------------------------------------------------------------------


def many_krs(count: int) -> list[KeyResultDefinition]:
    return [kpi_kr(f"kr-{index}", "net_promoter_score") for index in range(count)]


@pytest.mark.parametrize("count", [0, 6, 9])
def test_key_result_count_out_of_range(count: int) -> None:
    gaps = detect_gaps([objective(key_results=many_krs(count))], [NPS], NOW)
    assert set(gaps) == {"kr_count_out_of_range:obj-loyalty"}
    gap = gaps["kr_count_out_of_range:obj-loyalty"]
    assert gap.kind is GapKind.kr_count_out_of_range
    assert gap.owner == "alice"
    assert gap.period == "2026-Q4"
    assert str(count) in gap.message


@pytest.mark.parametrize("count", [1, 3, 5])
def test_key_result_count_in_range(count: int) -> None:
    assert detect_gaps([objective(key_results=many_krs(count))], [NPS], NOW) == {}


# -- too_many_objectives -------------------------------------------------------------------------


def owned(count: int, owner: str = "alice", period: str = "2026-Q4") -> list[ObjectiveFacts]:
    return [
        objective(f"obj-{owner}-{period}-{index}", owner=owner, period=period)
        for index in range(count)
    ]


def test_more_than_five_active_objectives_for_one_owner_in_one_period() -> None:
    gaps = detect_gaps(owned(6), [NPS], NOW)
    assert set(gaps) == {"too_many_objectives:alice@2026-Q4"}
    gap = gaps["too_many_objectives:alice@2026-Q4"]
    assert gap.kind is GapKind.too_many_objectives
    assert gap.subject == "alice@2026-Q4"
    assert gap.owner == "alice"
    assert gap.period == "2026-Q4"
    assert "6" in gap.message


def test_five_active_objectives_are_not_too_many() -> None:
    assert detect_gaps(owned(5), [NPS], NOW) == {}


def test_archiving_one_of_six_resolves_too_many_objectives() -> None:
    six = owned(6)
    archived = objective(six[0].definition.id, status=ObjectiveStatus.archived)
    assert detect_gaps([archived, *six[1:]], [NPS], NOW) == {}


def test_objectives_count_per_owner_and_per_period() -> None:
    split_by_period = owned(3, period="2026-Q3") + owned(3, period="2026-Q4")
    split_by_owner = owned(3, owner="alice") + owned(3, owner="bob")
    assert detect_gaps(split_by_period, [NPS], NOW) == {}
    assert detect_gaps(split_by_owner, [NPS], NOW) == {}
    gaps = detect_gaps(owned(6, owner="bob") + owned(5, owner="alice"), [NPS], NOW)
    assert set(gaps) == {"too_many_objectives:bob@2026-Q4"}


# -- orphan_objective ----------------------------------------------------------------------------


@pytest.mark.parametrize("level", [Level.department, Level.team, Level.individual])
def test_objective_below_company_level_without_parent_is_orphan(level: Level) -> None:
    gaps = detect_gaps([objective("obj-nps-team", level=level)], [NPS], NOW)
    assert set(gaps) == {"orphan_objective:obj-nps-team"}
    gap = gaps["orphan_objective:obj-nps-team"]
    assert gap.kind is GapKind.orphan_objective
    assert gap.owner == "alice"
    assert gap.period == "2026-Q4"


@pytest.mark.parametrize("level", [Level.department, Level.team, Level.individual])
def test_aligning_to_a_parent_resolves_orphan_objective(level: Level) -> None:
    aligned = objective("obj-nps-team", level=level, parent_id="obj-loyalty")
    assert detect_gaps([LOYALTY, aligned], [NPS], NOW) == {}


def test_company_objective_needs_no_parent() -> None:
    assert detect_gaps([objective(level=Level.company, parent_id=None)], [NPS], NOW) == {}


# -- stale_kpi -----------------------------------------------------------------------------------


def test_kpi_without_reading_for_more_than_twice_its_interval_is_stale() -> None:
    stale = kpi(last_arrival=NOW - 2 * WEEK - timedelta(seconds=1))
    gaps = detect_gaps([LOYALTY], [stale], NOW)
    assert set(gaps) == {"stale_kpi:net_promoter_score"}
    gap = gaps["stale_kpi:net_promoter_score"]
    assert gap.kind is GapKind.stale_kpi
    assert gap.subject == "net_promoter_score"
    assert "net_promoter_score" in gap.message


@pytest.mark.parametrize(
    "last_arrival",
    [NOW - 2 * WEEK, NOW - WEEK, NOW, None],
    ids=["exactly-2x", "1x", "just-now", "never"],
)
def test_kpi_with_a_recent_reading_is_not_stale(last_arrival: datetime | None) -> None:
    assert detect_gaps([LOYALTY], [kpi(last_arrival=last_arrival)], NOW) == {}


def test_a_new_reading_resolves_stale_kpi() -> None:
    old = NOW - timedelta(days=20)
    assert "stale_kpi:net_promoter_score" in detect_gaps([], [kpi(last_arrival=old)], NOW)
    assert detect_gaps([], [kpi(last_arrival=NOW - timedelta(hours=1))], NOW) == {}


def test_staleness_is_relative_to_the_interval_and_to_now() -> None:
    daily = kpi("new_customers", last_arrival=NOW - timedelta(days=3), interval=timedelta(days=1))
    assert set(detect_gaps([], [daily], NOW)) == {"stale_kpi:new_customers"}
    assert detect_gaps([], [daily], NOW - timedelta(days=2)) == {}


def test_unhealthy_and_stale_kpi_has_both_gaps() -> None:
    both = kpi("employee_turnover_rate", health=Health.unhealthy, last_arrival=NOW - 3 * WEEK)
    assert set(detect_gaps([], [both], NOW)) == {
        "kpi_unaddressed:employee_turnover_rate",
        "stale_kpi:employee_turnover_rate",
    }


# -- archived objectives, stable ids, determinism ------------------------------------------------


def test_archived_objective_produces_no_gap_at_all() -> None:
    archived = objective(
        "obj-old",
        owner=None,
        level=Level.team,
        key_results=[metric_kr(f"kr-old-{index}") for index in range(7)],
        with_data=[],
        status=ObjectiveStatus.archived,
    )
    assert detect_gaps([archived], [], NOW) == {}
    # the same definition while active has every objective gap
    active = objective(
        "obj-old",
        owner=None,
        level=Level.team,
        key_results=[metric_kr(f"kr-old-{index}") for index in range(7)],
        with_data=[],
    )
    assert kinds(detect_gaps([active], [], NOW)) == {
        "objective_without_owner",
        "kr_count_out_of_range",
        "orphan_objective",
        "kr_without_data",
    }


def messy_world() -> tuple[list[ObjectiveFacts], list[KPIFacts]]:
    objectives = [
        objective(owner=None, key_results=[metric_kr("kr-churn")], with_data=[]),
        objective("obj-nps-team", level=Level.team, key_results=[]),
        *owned(6, owner="bob"),
        retention(status=ObjectiveStatus.archived),
    ]
    kpis = [
        TURNOVER_UNHEALTHY,
        kpi("new_customers", last_arrival=NOW - timedelta(days=30)),
    ]
    return objectives, kpis


def test_gap_ids_are_kind_and_subject() -> None:
    objectives, kpis = messy_world()
    gaps = detect_gaps(objectives, kpis, NOW)
    assert set(gaps) == {
        "objective_without_owner:obj-loyalty",
        "kr_without_data:kr-churn",
        "orphan_objective:obj-nps-team",
        "kr_count_out_of_range:obj-nps-team",
        "too_many_objectives:bob@2026-Q4",
        "kpi_unaddressed:employee_turnover_rate",
        "stale_kpi:new_customers",
    }
    for gap_id, gap in gaps.items():
        assert gap_id == gap.gap_id == f"{gap.kind.value}:{gap.subject}"
    assert kinds(gaps) == {kind.value for kind in GapKind}


def test_same_inputs_give_the_same_gaps() -> None:
    objectives, kpis = messy_world()
    first = detect_gaps(objectives, kpis, NOW)
    again = detect_gaps(objectives, kpis, NOW)
    rebuilt = detect_gaps(*messy_world(), NOW)
    reordered = detect_gaps(objectives[::-1], kpis[::-1], NOW)
    from_generators = detect_gaps((o for o in objectives), (k for k in kpis), NOW)
    assert first == again == rebuilt == reordered == from_generators
    assert len(first) == 7


def test_kpi_gaps_belong_to_the_kpis_owner() -> None:
    neglected = kpi(
        "employee_turnover_rate",
        health=Health.unhealthy,
        last_arrival=NOW - timedelta(days=30),
        owner="hr-lead",
    )
    gaps = detect_gaps([], [neglected], NOW)
    assert {gap_id: gap.owner for gap_id, gap in gaps.items()} == {
        "kpi_unaddressed:employee_turnover_rate": "hr-lead",
        "stale_kpi:employee_turnover_rate": "hr-lead",
    }
    assert all(gap.period is None for gap in gaps.values())  # a KPI has no period


def test_a_stagnant_kpi_without_key_result_is_named_stagnant() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    stagnant = KPIFacts(
        key="employee_turnover_rate",
        health=Health.unhealthy,
        last_arrival=now,
        interval=timedelta(days=30),
        stagnant=True,
    )
    gaps = detect_gaps([], [stagnant], now)
    gap = gaps["kpi_unaddressed:employee_turnover_rate"]
    assert "stagnant" in gap.message
    assert "move the needle" in gap.message


# -- the memo the service settles gaps with gives detect_gaps' answer -------------------------

OWNERS = st.sampled_from(["alice", "bob", None])
KPI_KEYS = st.sampled_from(["net_promoter_score", "employee_turnover_rate", "new_customers"])
HEALTHS = st.sampled_from([Health.healthy, Health.warning, Health.unhealthy, None])


@st.composite
def objective_facts(draw: st.DrawFn, objective_id: str) -> ObjectiveFacts:
    key_results = [
        kpi_kr(f"{objective_id}-kr{n}", draw(KPI_KEYS))
        for n in range(draw(st.integers(min_value=0, max_value=6)))
    ]
    return objective(
        objective_id,
        owner=draw(OWNERS),
        level=draw(st.sampled_from([Level.company, Level.team])),
        parent_id=draw(st.sampled_from([None, "obj-0"])),
        status=draw(st.sampled_from([ObjectiveStatus.active, ObjectiveStatus.archived])),
        key_results=key_results,
        with_data=draw(st.sets(st.sampled_from([kr.id for kr in key_results] or ["none"]))),
    )


@st.composite
def kpi_facts(draw: st.DrawFn, key: str) -> KPIFacts:
    arrival = draw(st.none() | st.integers(min_value=-30, max_value=0))
    return KPIFacts(
        key=key,
        health=draw(HEALTHS),
        last_arrival=None if arrival is None else NOW + timedelta(days=arrival),
        interval=timedelta(days=draw(st.integers(min_value=1, max_value=10))),
        stagnant=draw(st.booleans()),
        owner=draw(OWNERS),
    )


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[int, list[ObjectiveFacts], list[KPIFacts]]]:
    """Calls in sequence: an instant (days after NOW, not always later), and the facts, each
    kept from the call before (the same object) or replaced by a new one; KPIs come into the
    catalogue and leave it."""
    objective_ids = [f"obj-{n}" for n in range(draw(st.integers(min_value=0, max_value=5)))]
    keys = ["net_promoter_score", "employee_turnover_rate", "new_customers"]
    calls = []
    objectives = [draw(objective_facts(objective_id)) for objective_id in objective_ids]
    kpis = [draw(kpi_facts(key)) for key in keys]
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        objectives = [
            draw(objective_facts(o.definition.id)) if draw(st.booleans()) else o for o in objectives
        ]
        kpis = [draw(kpi_facts(k.key)) if draw(st.booleans()) else k for k in kpis]
        catalogue = [k for k in kpis if draw(st.booleans())]
        calls.append((draw(st.integers(min_value=-5, max_value=40)), objectives, catalogue))
    return calls


@given(steps())
@settings(max_examples=300, deadline=None)
def test_the_memo_answers_as_detect_gaps(
    calls: list[tuple[int, list[ObjectiveFacts], list[KPIFacts]]],
) -> None:
    memo = GapMemo()
    for days, objectives, kpis in calls:
        now = NOW + timedelta(days=days)
        assert memo.detect(objectives, kpis, now) == detect_gaps(objectives, kpis, now)


def test_a_kpi_turns_stale_in_the_memo_as_time_passes() -> None:
    memo = GapMemo()
    quiet = kpi("new_customers", last_arrival=NOW, interval=timedelta(days=1))
    assert memo.detect([], [quiet], NOW) == {}
    assert memo.detect([], [quiet], NOW + timedelta(days=2)) == {}  # 2 intervals: not yet
    later = memo.detect([], [quiet], NOW + timedelta(days=2, seconds=1))
    assert set(later) == {"stale_kpi:new_customers"}
    assert kpi_gaps_hold_until(quiet, NOW) == NOW + timedelta(days=2)
    assert kpi_gaps_hold_until(quiet, NOW + timedelta(days=3)) is None  # stale for ever


# -- the facts of the tracks ------------------------------------------------------------------


def test_a_key_result_has_data_with_a_checked_in_value_or_a_reading_in_its_period() -> None:
    definition = objective(
        key_results=[metric_kr("kr-churn"), kpi_kr("kr-nps", "net_promoter_score")]
    ).definition
    track = ObjectiveTrack(definition.id, definition.model_dump(mode="json"), 1)
    track.check_in("kr-churn", None, None, None, 7, 2)  # confidence alone: no value
    track.stats["kr-nps"] = WindowStats()
    assert facts_of_objective(track).with_data == frozenset()
    track.check_in("kr-churn", 7.5, None, None, None, 3)
    track.stats["kr-nps"].add(ReadingRef("r1", 40.0, NOW, 1))
    assert facts_of_objective(track) == ObjectiveFacts(
        definition, frozenset({"kr-churn", "kr-nps"})
    )


def test_a_kpis_facts_hold_until_its_stagnation_may_change() -> None:
    definition = {
        "key": "net_promoter_score",
        "name": "NPS",
        "direction": "higher_is_better",
        "target": 45.0,
        "warning": 35.0,
        "interval": "P7D",
        "interval_seconds": WEEK.total_seconds(),
        "owner": "carol",
    }
    track = KPITrack("net_promoter_score", definition)
    facts, holds_until = facts_of_kpi(track, NOW, timedelta(days=14), 0.05)
    assert facts == kpi(health=None, last_arrival=None, owner="carol")
    assert holds_until is None  # healthy, or no readings: for ever
    observed = to_micros(NOW - timedelta(days=1))
    track.fold([("r1", 20.0, observed, 1, "", "unhealthy", to_micros(NOW))], NOW)
    facts, holds_until = facts_of_kpi(track, NOW, timedelta(days=14), 0.05)
    assert (facts.health, facts.stagnant, facts.last_arrival) == (Health.unhealthy, False, NOW)
    assert holds_until == NOW + timedelta(days=13)  # unhealthy for as long as the window


# -- what moves the open gaps -----------------------------------------------------------------

STALE = Gap(GapKind.stale_kpi, "nps", "KPI nps has had no reading", "carol")
ORPHAN = Gap(
    GapKind.orphan_objective, "obj-a", "team objective 'A' aligns to nothing", "bob", "2026"
)


def opened(gap: Gap, since: datetime) -> dict[str, object]:
    """A gap as ``GapBoard.open`` keeps it."""
    return {
        "gap_id": gap.gap_id,
        "kind": gap.kind.value,
        "subject": gap.subject,
        "message": gap.message,
        "owner": gap.owner,
        "period": gap.period,
        "since": since.isoformat(),
    }


def test_new_gaps_are_detected_now_and_gone_ones_resolved() -> None:
    board = {STALE.gap_id: opened(STALE, NOW - WEEK)}
    detected, resolved = gap_changes(board, {ORPHAN.gap_id: ORPHAN}, NOW)
    assert detected == [(ORPHAN, NOW)]
    assert resolved == [STALE.gap_id]


def test_an_open_gap_that_did_not_change_is_left_alone() -> None:
    board = {STALE.gap_id: opened(STALE, NOW - WEEK)}
    assert gap_changes(board, {STALE.gap_id: STALE}, NOW) == ([], [])


@pytest.mark.parametrize(
    "change", [{"owner": "dave"}, {"period": "2027"}, {"message": "KPI nps is defined now"}]
)
def test_an_open_gap_whose_owner_period_or_message_changed_is_detected_again_with_its_age(
    change: dict[str, str],
) -> None:
    board = {ORPHAN.gap_id: opened(ORPHAN, NOW - WEEK)}
    changed = Gap(**{**ORPHAN.__dict__, **change})
    assert gap_changes(board, {ORPHAN.gap_id: changed}, NOW) == ([(changed, NOW - WEEK)], [])


@settings(max_examples=200, deadline=None)
@given(
    before=st.sets(st.sampled_from([STALE, ORPHAN, Gap(GapKind.stale_kpi, "arr", "quiet")])),
    after=st.sets(st.sampled_from([STALE, ORPHAN, Gap(GapKind.stale_kpi, "arr", "late")])),
)
def test_the_changes_take_the_open_gaps_to_the_detected_ones(
    before: set[Gap], after: set[Gap]
) -> None:
    board = {gap.gap_id: opened(gap, NOW - WEEK) for gap in before}
    detected, resolved = gap_changes(board, {gap.gap_id: gap for gap in after}, NOW)
    for gap_id in resolved:
        del board[gap_id]
    for gap, since in detected:
        board[gap.gap_id] = opened(gap, since)
    assert board == {
        gap.gap_id: opened(gap, NOW - WEEK if gap.gap_id in {g.gap_id for g in before} else NOW)
        for gap in after
    }
    assert [gap.gap_id for gap, _ in detected] == sorted(gap.gap_id for gap, _ in detected)
