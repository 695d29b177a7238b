"""The goal service's aggregate and its rules: definitions, check-ins, redefinition (no I/O)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    Aggregation,
    KeyResultDefinition,
    KeyResultKind,
    Level,
    ObjectiveDefinition,
    ObjectiveStatus,
    parse_period,
)
from services.goal.commands import KeyResultCommand
from services.goal.domain import (
    Objective,
    check_definition,
    check_in_violations,
    key_result_violations,
)
from services.shared.errors import Conflict, NotFound, RuleViolation

# -- builders: the seed articles' examples ----------------------------------------------------


def metric(title: str, baseline: float, target: float, **fields: Any) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=fields.pop("id", str(uuid.uuid4())),
        title=title,
        kind=KeyResultKind.metric,
        baseline=baseline,
        target=target,
        **fields,
    )


def kpi(
    title: str, key: str | None, baseline: float, target: float, **fields: Any
) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=fields.pop("id", str(uuid.uuid4())),
        title=title,
        kind=KeyResultKind.kpi,
        kpi=key,
        aggregation=fields.pop("aggregation", Aggregation.latest),
        baseline=baseline,
        target=target,
        **fields,
    )


def milestone(title: str, checklist: list[str] | None = None, **fields: Any) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=fields.pop("id", str(uuid.uuid4())),
        title=title,
        kind=KeyResultKind.milestone,
        checklist=checklist or [],
        **fields,
    )


def objective_definition(
    title: str, key_results: list[KeyResultDefinition], **fields: Any
) -> ObjectiveDefinition:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "title": title,
        "owner": "ceo",
        "org_unit": "acme",
        "level": Level.company,
        "period": parse_period("2026"),
        "key_results": key_results,
    }
    return ObjectiveDefinition(**(values | fields))


def chatbot() -> ObjectiveDefinition:
    """Seed 000: "Become the #1 provider of AI-powered chatbots"."""
    return objective_definition(
        "Become the #1 provider of AI-powered chatbots",
        [
            metric(
                "Achieve $10M in annual recurring revenue from chatbot platform",
                2_000_000,
                10_000_000,
                unit="USD",
            ),
            kpi(
                "Onboard 300 new customers",
                "new_customers",
                0,
                300,
                aggregation=Aggregation.sum,
                unit="customers",
            ),
        ],
    )


def market_presence() -> ObjectiveDefinition:
    """Seed 001: "Boost market presence by year-end"."""
    return objective_definition(
        "Boost market presence by year-end",
        [
            metric("Grow revenue by 40%", 0, 40, unit="%"),
            milestone("Launch 3 new products", ["Chatbot Pro", "Voice agent", "Analytics"]),
            metric("Add 2 new markets", 0, 2, unit="markets"),
            kpi("Increase social media engagement by 50%", "social_engagement", 0, 50, unit="%"),
        ],
    )


def rules(error: pytest.ExceptionInfo[RuleViolation]) -> list[tuple[tuple[str | int, ...], str]]:
    return [(violation.field, violation.rule) for violation in error.value.violations]


def new_objective(definition: ObjectiveDefinition, actor: str = "ceo") -> Objective:
    return Objective(definition.model_dump(mode="json", exclude={"id"}), actor)


# -- definitions ------------------------------------------------------------------------------


def test_seed_chatbot_objective_is_accepted_without_warnings() -> None:
    assert check_definition(chatbot()) == []


def test_seed_market_presence_objective_is_accepted_without_warnings() -> None:
    assert check_definition(market_presence()) == []


@pytest.mark.parametrize("owner", [None, "", "   "])
def test_owner_is_required(owner: str | None) -> None:
    with pytest.raises(RuleViolation) as error:
        check_definition(chatbot().model_copy(update={"owner": owner}))
    assert rules(error) == [(("owner",), "owner_required")]


def test_at_least_one_key_result_is_required() -> None:
    with pytest.raises(RuleViolation) as error:
        check_definition(objective_definition("Become the #1 provider of AI chatbots", []))
    assert rules(error) == [(("key_results",), "at_least_one_key_result")]


def test_baseline_equal_to_target_is_refused() -> None:
    definition = objective_definition("Grow", [metric("Grow revenue by 40%", 40, 40)])
    with pytest.raises(RuleViolation) as error:
        check_definition(definition)
    assert rules(error) == [(("key_results", 0, "target"), "baseline_equals_target")]


@pytest.mark.parametrize("kind", [KeyResultKind.metric, KeyResultKind.kpi])
def test_metric_and_kpi_key_results_need_baseline_and_target(kind: KeyResultKind) -> None:
    key_result = KeyResultDefinition(
        id="kr", title="Onboard 300 new customers", kind=kind, kpi="new_customers"
    )
    found = {(field, rule) for field, rule, _ in key_result_violations(key_result)}
    assert {("baseline", "baseline_required"), ("target", "target_required")} <= found


def test_kpi_key_result_without_kpi_key_is_refused() -> None:
    definition = objective_definition("Chatbots", [kpi("Onboard 300 new customers", None, 0, 300)])
    with pytest.raises(RuleViolation) as error:
        check_definition(definition)
    assert rules(error) == [(("key_results", 0, "kpi"), "kpi_required")]


def test_kpi_key_only_on_kpi_key_results() -> None:
    definition = objective_definition("Chatbots", [metric("Achieve $10M ARR", 2e6, 1e7, kpi="arr")])
    with pytest.raises(RuleViolation) as error:
        check_definition(definition)
    assert rules(error) == [(("key_results", 0, "kpi"), "kpi_only_for_kind_kpi")]


@pytest.mark.parametrize("kind", ["okr", "KPI", "", "milestones"])
def test_unknown_kind_is_refused_by_the_command_model(kind: str) -> None:
    with pytest.raises(ValidationError) as error:
        KeyResultCommand(title="Onboard 300 new customers", kind=kind, baseline=0, target=300)
    assert [tuple(e["loc"]) for e in error.value.errors()] == [("kind",)]


def test_unknown_kind_is_refused_by_the_contract_too() -> None:
    with pytest.raises(ValidationError):
        KeyResultDefinition(id="kr", title="Onboard 300 new customers", kind="okr")


@pytest.mark.parametrize("kind", [KeyResultKind.metric, KeyResultKind.kpi, KeyResultKind.rollup])
def test_checklist_only_for_milestone(kind: KeyResultKind) -> None:
    key_result = KeyResultDefinition(
        id="kr",
        title="Launch 3 new products",
        kind=kind,
        baseline=0,
        target=3,
        kpi="products_launched" if kind is KeyResultKind.kpi else None,
        aggregation=Aggregation.count if kind is KeyResultKind.kpi else None,
        checklist=["Chatbot Pro", "Voice agent", "Analytics"],
    )
    with pytest.raises(RuleViolation) as error:
        check_definition(objective_definition("Boost market presence", [key_result]))
    assert rules(error) == [(("key_results", 0, "checklist"), "checklist_only_for_milestone")]


def test_milestone_with_checklist_is_accepted() -> None:
    definition = objective_definition(
        "Boost market presence", [milestone("Launch 3 new products", ["A", "B", "C"])]
    )
    assert check_definition(definition) == []


def test_duplicate_checklist_items_are_refused() -> None:
    definition = objective_definition(
        "Boost market presence",
        [milestone("Launch 3 new products", ["Chatbot Pro", "Voice agent", "Chatbot Pro"])],
    )
    with pytest.raises(RuleViolation) as error:
        check_definition(definition)
    assert rules(error) == [(("key_results", 0, "checklist"), "checklist_items_unique")]


def test_all_zero_weights_are_refused() -> None:
    definition = market_presence()
    zeroed = definition.model_copy(
        update={
            "key_results": [kr.model_copy(update={"weight": 0}) for kr in definition.key_results]
        }
    )
    with pytest.raises(RuleViolation) as error:
        check_definition(zeroed)
    assert rules(error) == [(("key_results",), "positive_weight_required")]


def test_some_zero_weights_are_accepted() -> None:
    definition = market_presence()
    first, *rest = definition.key_results
    partly = definition.model_copy(
        update={"key_results": [first, *(kr.model_copy(update={"weight": 0}) for kr in rest)]}
    )
    assert check_definition(partly) == []


def test_more_than_five_key_results_is_a_warning_not_an_error() -> None:
    key_results = [metric(f"Add {n} new markets", 0, n) for n in range(1, 7)]
    warnings = check_definition(objective_definition("Boost market presence", key_results))
    assert len(warnings) == 1
    assert "6 key results" in warnings[0]


def test_five_key_results_give_no_warning() -> None:
    key_results = [metric(f"Add {n} new markets", 0, n) for n in range(1, 6)]
    assert check_definition(objective_definition("Boost market presence", key_results)) == []


def test_several_violations_are_reported_together_with_their_field_paths() -> None:
    definition = objective_definition(
        "Boost market presence by year-end",
        [
            metric("Grow revenue by 40%", 40, 40),
            kpi("Increase social media engagement by 50%", None, 0, 50),
            milestone("Launch 3 new products", ["A", "A"]),
        ],
        owner=None,
    )
    with pytest.raises(RuleViolation) as error:
        check_definition(definition)
    assert set(rules(error)) == {
        (("owner",), "owner_required"),
        (("key_results", 0, "target"), "baseline_equals_target"),
        (("key_results", 1, "kpi"), "kpi_required"),
        (("key_results", 2, "checklist"), "checklist_items_unique"),
    }
    assert len(error.value.violations) == 4
    assert "key_results.1.kpi" in str(error.value)


def test_reduce_churn_from_8_to_5_percent_is_valid() -> None:
    """Lower is better: the target is below the baseline, and that is fine."""
    definition = objective_definition(
        "Keep the customers we win", [metric("Reduce churn from 8% to 5%", 8, 5, unit="%")]
    )
    assert check_definition(definition) == []


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(baseline=finite, target=finite)
def test_any_metric_with_finite_baseline_different_from_target_is_accepted(
    baseline: float, target: float
) -> None:
    assume(baseline != target)
    definition = objective_definition("Grow", [metric("Grow revenue", baseline, target)])
    assert check_definition(definition) == []


@given(value=finite)
def test_any_metric_with_baseline_equal_to_target_is_refused(value: float) -> None:
    definition = objective_definition("Grow", [metric("Grow revenue", value, value)])
    with pytest.raises(RuleViolation) as error:
        check_definition(definition)
    assert [violation.rule for violation in error.value.violations] == ["baseline_equals_target"]


# -- the aggregate: check-ins -----------------------------------------------------------------


def test_new_objective_carries_its_definition_under_its_own_id() -> None:
    definition = chatbot()
    objective = new_objective(definition)
    assert objective.definition.id == str(objective.id)
    assert objective.definition.model_dump(exclude={"id"}) == definition.model_dump(exclude={"id"})
    assert objective.check_ins == {}
    assert not objective.archived
    assert objective.last_actor == "ceo"


def test_metric_check_in_is_recorded_with_its_actor() -> None:
    objective = new_objective(chatbot())
    arr = objective.definition.key_results[0]
    objective.check_in(
        arr.id,
        value=4_500_000,
        confidence=7,
        comment="two enterprise deals",
        actor="sales-lead",
    )
    assert objective.check_ins[arr.id]["value"] == 4_500_000
    assert objective.check_ins[arr.id]["confidence"] == 7
    assert objective.check_ins[arr.id]["actor"] == "sales-lead"
    assert objective.version == 2


def test_value_check_in_on_kpi_key_result_is_refused() -> None:
    objective = new_objective(chatbot())
    customers = objective.definition.key_results[1]
    with pytest.raises(RuleViolation) as error:
        objective.check_in(
            customers.id,
            value=120,
            actor="sales-lead",
        )
    assert rules(error) == [(("value",), "value_only_for_metric")]
    assert "KPI" in error.value.violations[0].message
    assert objective.check_ins == {}
    assert objective.version == 1


def test_done_check_in_on_metric_key_result_is_refused() -> None:
    objective = new_objective(market_presence())
    revenue = objective.definition.key_results[0]
    with pytest.raises(RuleViolation) as error:
        objective.check_in(
            revenue.id,
            done=True,
            actor="cfo",
        )
    assert rules(error) == [(("done",), "done_only_for_milestone")]
    assert objective.check_ins == {}


def test_unknown_checklist_item_is_refused() -> None:
    objective = new_objective(market_presence())
    products = objective.definition.key_results[1]
    with pytest.raises(RuleViolation) as error:
        objective.check_in(
            products.id,
            checklist_done=["Chatbot Pro", "Hologram"],
            actor="cpo",
        )
    assert rules(error) == [(("checklist_done",), "unknown_checklist_item")]
    assert "Hologram" in error.value.violations[0].message
    assert objective.check_ins == {}


def test_known_checklist_items_are_recorded() -> None:
    objective = new_objective(market_presence())
    products = objective.definition.key_results[1]
    objective.check_in(
        products.id,
        checklist_done=["Chatbot Pro", "Analytics"],
        actor="cpo",
    )
    assert objective.check_ins[products.id]["checklist_done"] == ["Chatbot Pro", "Analytics"]


def test_checklist_done_on_milestone_without_checklist_is_refused() -> None:
    key_result = milestone("Open the Berlin office")
    found = check_in_violations(key_result, None, None, ["lease signed"])
    assert [(field, rule) for field, rule, _ in found] == [("checklist_done", "no_checklist")]


def test_check_in_on_archived_objective_is_a_conflict() -> None:
    objective = new_objective(chatbot())
    objective.archive("strategy changed", actor="ceo")
    assert objective.archived
    with pytest.raises(Conflict):
        objective.check_in(
            objective.definition.key_results[0].id,
            value=3e6,
            actor="sales-lead",
        )
    assert objective.check_ins == {}


def test_archiving_twice_is_a_conflict() -> None:
    objective = new_objective(chatbot())
    objective.archive(None, actor="ceo")
    with pytest.raises(Conflict):
        objective.archive(None, actor="ceo")
    assert objective.version == 2


def test_check_in_on_unknown_key_result_is_not_found() -> None:
    objective = new_objective(chatbot())
    with pytest.raises(NotFound):
        objective.check_in(
            "no-such-kr",
            value=1,
            actor="sales-lead",
        )
    assert objective.check_ins == {}


def test_check_in_records_the_time_of_the_check_in() -> None:
    objective = new_objective(chatbot())
    arr = objective.definition.key_results[0]
    objective.check_in(
        arr.id,
        value=3e6,
        actor="sales-lead",
    )
    defined, checked_in = objective.collect_events()
    assert defined.timestamp != checked_in.timestamp
    assert objective.check_ins[arr.id]["at"] == checked_in.timestamp.isoformat()


# -- the aggregate: redefinition and replay ---------------------------------------------------


def test_redefinition_drops_check_ins_of_removed_key_results() -> None:
    objective = new_objective(market_presence())
    revenue, products, markets, _social = objective.definition.key_results
    for key_result, value in ((revenue, 12.0), (markets, 1.0)):
        objective.check_in(
            key_result.id,
            value=value,
            actor="cmo",
        )
    objective.check_in(
        products.id,
        done=True,
        actor="cpo",
    )
    assert set(objective.check_ins) == {revenue.id, markets.id, products.id}

    kept = objective.definition.model_copy(update={"key_results": [revenue, products]})
    objective.redefine(kept, actor="coo")

    assert set(objective.check_ins) == {revenue.id, products.id}
    assert objective.check_ins[revenue.id]["value"] == 12.0
    assert [kr.id for kr in objective.definition.key_results] == [revenue.id, products.id]
    assert objective.definition.id == str(objective.id)
    assert objective.last_actor == "coo"


def test_redefining_an_archived_objective_is_a_conflict() -> None:
    objective = new_objective(chatbot())
    objective.archive("merged", actor="ceo")
    with pytest.raises(Conflict):
        objective.redefine(chatbot(), actor="coo")
    assert objective.definition.status is ObjectiveStatus.archived


def test_state_replayed_from_the_events_equals_the_live_state() -> None:
    objective = new_objective(market_presence())
    revenue, products, *_ = objective.definition.key_results
    objective.check_in(
        revenue.id,
        value=18.5,
        confidence=6,
        actor="cfo",
    )
    objective.redefine(
        objective.definition.model_copy(update={"key_results": [revenue]}), actor="coo"
    )
    objective.archive("year closed", actor="ceo")
    events = objective.collect_events()
    assert [type(e).__name__ for e in events] == [
        "Defined",
        "KeyResultCheckedIn",
        "Redefined",
        "Archived",
    ]
    replayed: Objective | None = None
    for domain_event in events:
        replayed = domain_event.mutate(replayed)
    assert replayed is not None
    assert replayed.definition == objective.definition
    assert replayed.check_ins == objective.check_ins
    assert replayed.version == objective.version == 4
    assert replayed.archived
    assert products.id not in replayed.check_ins
