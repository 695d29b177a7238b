"""The goal application on a temporary SQLite store: commands, queries, the catalogue, restart,
and the integration events the outbox publishes from the stored log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import (
    Aggregation,
    KeyResultCheckedIn,
    KeyResultKind,
    Level,
    ObjectiveArchived,
    ObjectiveSet,
    ObjectiveStatus,
    parse_event,
    stable_event_id,
)
from services.goal.application import GoalApplication
from services.goal.commands import CheckInCommand, KeyResultCommand, ObjectiveCommand, PeriodRange
from services.goal.domain import CataloguedKPI, Objective
from services.goal.publishing import integration_event
from services.shared.errors import Conflict, NotFound, RuleViolation
from services.shared.settings import Settings
from services.shared.store import store_environment
from tests.support import sent_envelope

# -- fixtures and builders --------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return store_environment(Settings(service="goal", data_dir=tmp_path))


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[GoalApplication]:
    application = GoalApplication(env=env)
    yield application
    application.close()


def chatbot_command(**fields: Any) -> ObjectiveCommand:
    """Seed 000: "Become the #1 provider of AI-powered chatbots"."""
    values: dict[str, Any] = {
        "title": "Become the #1 provider of AI-powered chatbots",
        "description": "Win the chatbot market with the best platform.",
        "owner": "ceo",
        "contributors": ["cto", "sales-lead"],
        "org_unit": "acme",
        "level": Level.company,
        "period": "2026",
        "key_results": [
            KeyResultCommand(
                title="Achieve $10M in annual recurring revenue from chatbot platform",
                kind=KeyResultKind.metric,
                unit="USD",
                baseline=2_000_000,
                target=10_000_000,
                weight=2,
            ),
            KeyResultCommand(
                title="Onboard 300 new customers",
                kind=KeyResultKind.kpi,
                unit="customers",
                baseline=0,
                target=300,
                kpi="new_customers",
                aggregation=Aggregation.sum,
            ),
        ],
    }
    return ObjectiveCommand(**(values | fields))


def market_command(**fields: Any) -> ObjectiveCommand:
    """Seed 001: "Boost market presence by year-end"."""
    values: dict[str, Any] = {
        "title": "Boost market presence by year-end",
        "owner": "cmo",
        "org_unit": "marketing",
        "level": Level.department,
        "period": "2026-Q4",
        "key_results": [
            KeyResultCommand(title="Grow revenue by 40%", kind="metric", baseline=0, target=40),
            KeyResultCommand(
                title="Launch 3 new products",
                kind="milestone",
                checklist=["Chatbot Pro", "Voice agent", "Analytics"],
            ),
            KeyResultCommand(title="Add 2 new markets", kind="metric", baseline=0, target=2),
            KeyResultCommand(
                title="Increase social media engagement by 50%",
                kind="kpi",
                baseline=0,
                target=50,
                kpi="social_engagement",
            ),
        ],
    }
    return ObjectiveCommand(**(values | fields))


def rules(error: pytest.ExceptionInfo[RuleViolation]) -> list[tuple[tuple[str | int, ...], str]]:
    return [(violation.field, violation.rule) for violation in error.value.violations]


def kr_ids(objective: Objective) -> list[str]:
    return [key_result.id for key_result in objective.definition.key_results]


# -- create, get, redefine --------------------------------------------------------------------


def test_create_then_get_returns_the_same_definition_with_generated_ids(
    app: GoalApplication,
) -> None:
    command = chatbot_command()
    app.save(CataloguedKPI("new_customers"))  # as if defined on metrics.events
    created, warnings = app.create_objective(command, actor="ceo")
    assert warnings == []

    got = app.get_objective(created.id)
    assert got.definition == created.definition
    definition = got.definition
    assert definition.id == str(created.id)
    assert uuid.UUID(definition.id) == created.id
    expected = command.model_dump(exclude={"key_results", "period", "parent_id", "id", "status"})
    assert definition.model_dump(include=set(expected)) == expected
    assert definition.period.label == "2026"
    assert (definition.period.start.isoformat(), definition.period.end.isoformat()) == (
        "2026-01-01",
        "2026-12-31",
    )
    assert definition.status is ObjectiveStatus.active

    ids = kr_ids(got)
    assert len(set(ids)) == 2
    for given, stored in zip(command.key_results, definition.key_results, strict=True):
        assert uuid.UUID(stored.id)
        assert stored.model_dump(exclude={"id"}) == given.model_dump(exclude={"id"})
    assert app.catalogue.definitions == {definition.id: definition}


def test_kpi_key_result_without_aggregation_defaults_to_latest(app: GoalApplication) -> None:
    created, _ = app.create_objective(market_command(), actor="cmo")
    social = created.definition.key_results[3]
    assert social.kind is KeyResultKind.kpi
    assert social.aggregation is Aggregation.latest


def test_custom_period_range_is_accepted(app: GoalApplication) -> None:
    period = PeriodRange.model_validate({"start": "2026-10-01", "end": "2027-03-31"})
    created, _ = app.create_objective(chatbot_command(period=period), actor="ceo")
    assert created.definition.period.label == "2026-10-01..2027-03-31"


def test_invalid_definition_is_refused_and_nothing_is_stored(app: GoalApplication) -> None:
    with pytest.raises(RuleViolation) as error:
        app.create_objective(chatbot_command(owner=" "), actor="ceo")
    assert rules(error) == [(("owner",), "owner_required")]
    assert app.max_position() == 0
    assert app.catalogue.select() == []


def test_more_than_five_key_results_is_stored_with_a_warning(app: GoalApplication) -> None:
    key_results = [
        KeyResultCommand(title=f"Add {n} new markets", kind="metric", baseline=0, target=n)
        for n in range(1, 7)
    ]
    created, warnings = app.create_objective(market_command(key_results=key_results), "cmo")
    assert len(warnings) == 1
    assert len(app.get_objective(created.id).definition.key_results) == 6


def test_redefine_keeps_given_key_result_ids_and_adds_new_ones(app: GoalApplication) -> None:
    created, _ = app.create_objective(market_command(), actor="cmo")
    revenue, products, _markets, _social = created.definition.key_results

    command = market_command(
        title="Boost market presence in Europe by year-end",
        key_results=[
            KeyResultCommand(
                id=revenue.id, title="Grow revenue by 50%", kind="metric", baseline=0, target=50
            ),
            KeyResultCommand(id=products.id, title="Launch 3 new products", kind="milestone"),
            KeyResultCommand(title="Open the Berlin office", kind="milestone"),
        ],
    )
    redefined, _ = app.redefine_objective(created.id, command, actor="coo")

    got = app.get_objective(created.id)
    ids = kr_ids(got)
    assert ids[:2] == [revenue.id, products.id]
    assert ids[2] not in kr_ids(created)
    assert uuid.UUID(ids[2])
    assert got.definition.key_results[0].target == 50
    assert got.definition.title == "Boost market presence in Europe by year-end"
    assert got.version == 2
    assert app.catalogue.definitions[str(created.id)] == got.definition == redefined.definition


def test_redefine_drops_check_ins_of_removed_key_results(app: GoalApplication) -> None:
    created, _ = app.create_objective(market_command(), actor="cmo")
    revenue, _products, markets, _social = created.definition.key_results
    app.check_in(created.id, revenue.id, CheckInCommand(value=10), actor="cfo")
    app.check_in(created.id, markets.id, CheckInCommand(value=1), actor="cmo")

    keep_revenue = market_command(
        key_results=[
            KeyResultCommand(
                id=revenue.id, title="Grow revenue by 40%", kind="metric", baseline=0, target=40
            )
        ]
    )
    app.redefine_objective(created.id, keep_revenue, actor="coo")
    assert set(app.get_objective(created.id).check_ins) == {revenue.id}


def test_redefine_with_unknown_key_result_id_is_refused(app: GoalApplication) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo")
    command = chatbot_command(
        key_results=[
            KeyResultCommand(
                id="not-a-key-result-of-this-objective",
                title="Onboard 300 new customers",
                kind="metric",
                baseline=0,
                target=300,
            )
        ]
    )
    with pytest.raises(RuleViolation) as error:
        app.redefine_objective(created.id, command, actor="ceo")
    assert rules(error) == [(("key_results", 0, "id"), "unknown_key_result")]
    assert app.get_objective(created.id).version == 1


def test_create_with_a_key_result_id_is_refused(app: GoalApplication) -> None:
    command = chatbot_command(
        key_results=[
            KeyResultCommand(id="mine", title="Onboard", kind="metric", baseline=0, target=300)
        ]
    )
    with pytest.raises(RuleViolation) as error:
        app.create_objective(command, actor="ceo")
    assert rules(error) == [(("key_results", 0, "id"), "unknown_key_result")]


def test_redefine_with_the_same_key_result_id_twice_is_refused(app: GoalApplication) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo")
    arr = created.definition.key_results[0]
    twice = chatbot_command(
        key_results=[
            KeyResultCommand(id=arr.id, title="ARR $10M", kind="metric", baseline=0, target=1e7),
            KeyResultCommand(id=arr.id, title="ARR $12M", kind="metric", baseline=0, target=12e6),
        ]
    )
    with pytest.raises(RuleViolation) as refused:
        app.redefine_objective(created.id, twice, actor="ceo")
    assert [(v.field, v.rule) for v in refused.value.violations] == [
        (("key_results", 1, "id"), "duplicate_key_result_id")
    ]
    assert len(set(kr_ids(app.get_objective(created.id)))) == 2


def test_redefine_unknown_objective_is_not_found(app: GoalApplication) -> None:
    with pytest.raises(NotFound):
        app.redefine_objective(uuid.uuid4(), chatbot_command(), actor="ceo")


def test_get_unknown_objective_is_not_found(app: GoalApplication) -> None:
    with pytest.raises(NotFound):
        app.get_objective(uuid.uuid4())


# -- alignment --------------------------------------------------------------------------------


def test_parent_that_does_not_exist_is_refused(app: GoalApplication) -> None:
    with pytest.raises(RuleViolation) as error:
        app.create_objective(market_command(parent_id=uuid.uuid4()), actor="cmo")
    assert rules(error) == [(("parent_id",), "parent_not_found")]
    assert app.catalogue.select() == []


def test_aligning_to_a_key_result_of_the_parent_is_accepted(app: GoalApplication) -> None:
    parent, _ = app.create_objective(chatbot_command(), actor="ceo")
    customers = parent.definition.key_results[1]
    child, _ = app.create_objective(
        market_command(parent_id=parent.id, parent_key_result_id=customers.id), actor="cmo"
    )
    got = app.get_objective(child.id).definition
    assert (got.parent_id, got.parent_key_result_id) == (str(parent.id), customers.id)


def test_parent_key_result_not_in_the_parent_is_refused(app: GoalApplication) -> None:
    parent, _ = app.create_objective(chatbot_command(), actor="ceo")
    other, _ = app.create_objective(market_command(), actor="cmo")
    with pytest.raises(RuleViolation) as error:
        app.create_objective(
            market_command(
                parent_id=parent.id, parent_key_result_id=other.definition.key_results[0].id
            ),
            actor="cmo",
        )
    assert rules(error) == [(("parent_key_result_id",), "parent_key_result_not_found")]


def test_parent_key_result_without_parent_is_refused(app: GoalApplication) -> None:
    with pytest.raises(RuleViolation) as error:
        app.create_objective(market_command(parent_key_result_id="some-kr"), actor="cmo")
    assert rules(error) == [(("parent_id",), "parent_required")]


def test_archived_parent_is_refused(app: GoalApplication) -> None:
    parent, _ = app.create_objective(chatbot_command(), actor="ceo")
    app.archive_objective(parent.id, "pivot", actor="ceo")
    with pytest.raises(RuleViolation) as error:
        app.create_objective(market_command(parent_id=parent.id), actor="cmo")
    assert rules(error) == [(("parent_id",), "parent_archived")]


def test_aligning_an_objective_to_its_own_descendant_is_a_cycle(app: GoalApplication) -> None:
    company, _ = app.create_objective(chatbot_command(), actor="ceo")
    department, _ = app.create_objective(market_command(parent_id=company.id), actor="cmo")
    team, _ = app.create_objective(
        market_command(title="Win the DACH market", level=Level.team, parent_id=department.id),
        actor="dach-lead",
    )
    with pytest.raises(RuleViolation) as error:
        app.redefine_objective(company.id, chatbot_command(parent_id=team.id), actor="ceo")
    assert rules(error) == [(("parent_id",), "alignment_cycle")]
    assert app.get_objective(company.id).definition.parent_id is None
    assert app.get_objective(company.id).version == 1


def test_aligning_an_objective_to_itself_is_a_cycle(app: GoalApplication) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo")
    with pytest.raises(RuleViolation) as error:
        app.redefine_objective(created.id, chatbot_command(parent_id=created.id), actor="ceo")
    assert rules(error) == [(("parent_id",), "alignment_cycle")]


def test_realigning_to_a_sibling_branch_is_not_a_cycle(app: GoalApplication) -> None:
    company, _ = app.create_objective(chatbot_command(), actor="ceo")
    marketing, _ = app.create_objective(market_command(parent_id=company.id), actor="cmo")
    sales, _ = app.create_objective(
        market_command(title="Sell more", org_unit="sales", parent_id=company.id), actor="cso"
    )
    app.redefine_objective(
        sales.id,
        market_command(title="Sell more", org_unit="sales", parent_id=marketing.id),
        actor="cso",
    )
    assert app.get_objective(sales.id).definition.parent_id == str(marketing.id)


# -- archive, check-in ------------------------------------------------------------------------


def test_archive_then_redefine_is_a_conflict(app: GoalApplication) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo")
    app.archive_objective(created.id, "merged into the platform OKR", actor="ceo")
    with pytest.raises(Conflict):
        app.redefine_objective(created.id, chatbot_command(title="Revived"), actor="ceo")
    got = app.get_objective(created.id)
    assert got.archived
    assert got.version == 2
    assert app.catalogue.definitions[str(created.id)].status is ObjectiveStatus.archived


def test_archive_twice_and_check_in_after_archive_are_conflicts(app: GoalApplication) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo")
    app.archive_objective(created.id, None, actor="ceo")
    with pytest.raises(Conflict):
        app.archive_objective(created.id, None, actor="ceo")
    with pytest.raises(Conflict):
        app.check_in(
            created.id, created.definition.key_results[0].id, CheckInCommand(value=3e6), "cfo"
        )
    assert app.get_objective(created.id).version == 2


def test_check_in_rules_through_the_application(app: GoalApplication) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo")
    arr, customers = created.definition.key_results
    with pytest.raises(NotFound):
        app.check_in(created.id, "no-such-kr", CheckInCommand(value=1), actor="cfo")
    with pytest.raises(NotFound):
        app.check_in(uuid.uuid4(), arr.id, CheckInCommand(value=1), actor="cfo")
    with pytest.raises(RuleViolation) as error:
        app.check_in(created.id, customers.id, CheckInCommand(value=120), actor="cfo")
    assert rules(error) == [(("value",), "value_only_for_metric")]
    with pytest.raises(RuleViolation) as error:
        app.check_in(created.id, arr.id, CheckInCommand(), actor="cfo")
    assert rules(error) == [(("value",), "empty_check_in")]
    assert app.get_objective(created.id).version == 1

    app.check_in(created.id, arr.id, CheckInCommand(value=4e6, confidence=8), actor="cfo")
    check_in = app.get_objective(created.id).check_ins[arr.id]
    assert (check_in["value"], check_in["confidence"], check_in["actor"]) == (4e6, 8, "cfo")


def test_the_hundredth_event_of_an_objective_is_saved_with_a_snapshot(
    app: GoalApplication,
) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo")
    arr = created.definition.key_results[0]
    objective = app.get_objective(created.id)
    for value in range(98):  # versions 2..99, saved in one go to keep the test fast
        objective.check_in(
            arr.id,
            value=float(value),
            actor="cfo",
        )
    app.save(objective)
    assert app.get_objective(created.id).version == 99

    app.check_in(created.id, arr.id, CheckInCommand(value=5e6), actor="cfo")
    got = app.get_objective(created.id)
    assert got.version == 100
    assert got.check_ins[arr.id]["value"] == 5e6
    assert app.snapshots is not None
    assert [s.originator_version for s in app.snapshots.get(created.id)] == [100]


# -- catalogue and history --------------------------------------------------------------------


def test_catalogue_filters_by_period_owner_org_unit_level_and_status(
    app: GoalApplication,
) -> None:
    chatbots, _ = app.create_objective(chatbot_command(), actor="ceo")
    market, _ = app.create_objective(market_command(), actor="cmo")
    social, _ = app.create_objective(
        market_command(
            title="Be the loudest chatbot brand online",
            owner="social-lead",
            level=Level.team,
            period="2026-11",
        ),
        actor="cmo",
    )
    churn, _ = app.create_objective(
        chatbot_command(
            title="Keep the customers we win",
            owner="cs-lead",
            org_unit="customer-success",
            level=Level.department,
            period="2026-Q4",
            key_results=[
                KeyResultCommand(
                    title="Reduce churn from 8% to 5%", kind="metric", baseline=8, target=5
                )
            ],
        ),
        actor="cs-lead",
    )
    app.archive_objective(churn.id, "folded into retention OKR", actor="ceo")

    def titles(**filters: Any) -> set[str]:
        return {definition.title for definition in app.catalogue.select(**filters)}

    everything = {o.definition.title for o in (chatbots, market, social, churn)}
    assert titles() == everything
    assert titles(period="2026") == {chatbots.definition.title}
    assert titles(period="2026-Q4") == {market.definition.title, churn.definition.title}
    assert titles(period="2026-11") == {social.definition.title}
    assert titles(period="2025") == set()
    assert titles(owner="cmo") == {market.definition.title}
    assert titles(owner="social-lead") == {social.definition.title}
    assert titles(org_unit="marketing") == {market.definition.title, social.definition.title}
    assert titles(org_unit="customer-success") == {churn.definition.title}
    assert titles(level=Level.company) == {chatbots.definition.title}
    assert titles(level=Level.department) == {market.definition.title, churn.definition.title}
    assert titles(level=Level.team) == {social.definition.title}
    assert titles(level=Level.individual) == set()
    assert titles(status=ObjectiveStatus.archived) == {churn.definition.title}
    assert titles(status=ObjectiveStatus.active) == everything - {churn.definition.title}
    assert titles(period="2026-Q4", status=ObjectiveStatus.active) == {market.definition.title}
    assert titles(org_unit="marketing", level=Level.team, owner="cmo") == set()


def test_history_lists_events_oldest_first_with_their_actors(app: GoalApplication) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo", correlation_id="req-1")
    arr = created.definition.key_results[0]
    app.check_in(created.id, arr.id, CheckInCommand(value=3e6), actor="sales-lead")
    app.redefine_objective(created.id, chatbot_command(title="Lead AI chatbots"), actor="coo")
    app.archive_objective(created.id, "done", actor="ceo")

    history = app.history(created.id)
    assert [type(e).__name__ for e in history] == [
        "Defined",
        "KeyResultCheckedIn",
        "Redefined",
        "Archived",
    ]
    assert [e.actor for e in history] == ["ceo", "sales-lead", "coo", "ceo"]
    assert [e.originator_version for e in history] == [1, 2, 3, 4]
    timestamps = [e.timestamp for e in history]
    assert timestamps == sorted(timestamps)
    assert history[0].correlation_id == "req-1"
    assert history[1].value == 3e6
    assert history[3].reason == "done"


def test_history_of_unknown_objective_is_not_found(app: GoalApplication) -> None:
    with pytest.raises(NotFound):
        app.history(uuid.uuid4())


# -- restart: state rebuilt from the log ------------------------------------------------------


def populate(app: GoalApplication) -> tuple[Objective, Objective]:
    chatbots, _ = app.create_objective(chatbot_command(), actor="ceo")
    market, _ = app.create_objective(market_command(parent_id=chatbots.id), actor="cmo")
    revenue, products, *_ = market.definition.key_results
    app.check_in(
        chatbots.id, chatbots.definition.key_results[0].id, CheckInCommand(value=4e6), "cfo"
    )
    app.check_in(market.id, revenue.id, CheckInCommand(value=12, comment="Q4 deals"), "cmo")
    app.check_in(
        market.id, products.id, CheckInCommand(checklist_done=["Chatbot Pro"], confidence=6), "cpo"
    )
    app.archive_objective(chatbots.id, "replaced", actor="ceo")
    return chatbots, market


def test_restart_rebuilds_objectives_check_ins_and_catalogue_from_the_log(
    env: dict[str, str],
) -> None:
    first = GoalApplication(env=env)
    chatbots, market = populate(first)
    before = {
        objective_id: (o.definition, o.check_ins, o.version)
        for objective_id in (chatbots.id, market.id)
        for o in [first.get_objective(objective_id)]
    }
    catalogue_before = dict(first.catalogue.definitions)
    position_before = first.max_position()
    first.close()

    second = GoalApplication(env=env)
    try:
        assert second.max_position() == position_before == 6
        assert second.catalogue.position == position_before
        assert second.catalogue.definitions == catalogue_before
        assert len(catalogue_before) == 2
        for objective_id, (definition, check_ins, version) in before.items():
            got = second.get_objective(objective_id)
            assert (got.definition, got.check_ins, got.version) == (definition, check_ins, version)
        assert second.get_objective(chatbots.id).archived
        assert second.catalogue.select(status=ObjectiveStatus.archived)[0].id == str(chatbots.id)

        revenue = market.definition.key_results[0]
        second.check_in(market.id, revenue.id, CheckInCommand(value=20), actor="cmo")
        assert second.get_objective(market.id).version == before[market.id][2] + 1
    finally:
        second.close()


# -- integration events (outbox) --------------------------------------------------------------


def published(app: GoalApplication) -> list[tuple[int, Any]]:
    notifications = app.recorder.select_notifications(1, 1000)
    publications = [
        (n.id, integration_event(app.mapper.to_domain_event(n), n.id)) for n in notifications
    ]
    return [(p, None if e is None else sent_envelope(e)) for p, e in publications]


def test_integration_events_map_each_stored_event_to_its_contract(
    app: GoalApplication,
) -> None:
    created, _ = app.create_objective(chatbot_command(), actor="ceo", correlation_id="req-1")
    arr = created.definition.key_results[0]
    app.check_in(
        created.id, arr.id, CheckInCommand(value=4e6, confidence=7), "cfo", correlation_id="req-2"
    )
    redefined, _ = app.redefine_objective(
        created.id, chatbot_command(title="Lead AI chatbots"), actor="coo"
    )
    app.archive_objective(created.id, "replaced", actor="ceo")

    events = published(app)
    assert [type(e) for _, e in events] == [
        ObjectiveSet,
        KeyResultCheckedIn,
        ObjectiveSet,
        ObjectiveArchived,
    ]
    for position, envelope in events:
        assert envelope.position == position
        assert envelope.aggregate_id == str(created.id)
        assert envelope.producer == "goal"
        assert envelope.event_id == stable_event_id(
            "goal", str(created.id), envelope.aggregate_version
        )
    assert [e.position for _, e in events] == [1, 2, 3, 4]
    assert [e.aggregate_version for _, e in events] == [1, 2, 3, 4]
    assert [e.actor for _, e in events] == ["ceo", "cfo", "coo", "ceo"]
    assert [e.correlation_id for _, e in events] == ["req-1", "req-2", None, None]
    assert len({e.event_id for _, e in events}) == 4

    defined, checked_in, redefined_set, archived = (e for _, e in events)
    assert defined.payload == created.definition
    assert redefined_set.payload == redefined.definition
    assert redefined_set.payload.title == "Lead AI chatbots"
    assert checked_in.payload.objective_id == str(created.id)
    assert checked_in.payload.key_result_id == arr.id
    assert (checked_in.payload.value, checked_in.payload.confidence) == (4e6, 7)
    assert archived.payload.objective_id == str(created.id)
    assert archived.payload.reason == "replaced"
    for _, envelope in events:
        assert parse_event(envelope.to_json()) == envelope


def test_integration_event_ids_are_stable_across_republishing(env: dict[str, str]) -> None:
    first = GoalApplication(env=env)
    populate(first)
    once = published(first)
    twice = published(first)
    first.close()
    assert [e.event_id for _, e in once] == [e.event_id for _, e in twice]
    assert once == twice

    restarted = GoalApplication(env=env)
    try:
        after_restart = published(restarted)
    finally:
        restarted.close()
    assert [(p, e.event_id) for p, e in after_restart] == [(p, e.event_id) for p, e in once]
    assert [e.position for _, e in after_restart] == list(range(1, 7))
    assert [type(e) for _, e in after_restart] == [
        ObjectiveSet,
        ObjectiveSet,
        KeyResultCheckedIn,
        KeyResultCheckedIn,
        KeyResultCheckedIn,
        ObjectiveArchived,
    ]
    assert [e.actor for _, e in after_restart] == ["ceo", "cmo", "cfo", "cmo", "cpo", "ceo"]
