"""The KPI catalogue the goal service keeps from ``metrics.events``: a key result naming a KPI
outside it is accepted with a warning, and the readings that fill the topic are skipped
unread, at no cost to the store. Through the consumer the service runs (``Notes``), which
notes the scores from ``alignment.events`` too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from contracts import (
    ALIGNMENT_EVENTS,
    METRICS_EVENTS,
    Envelope,
    GapDetected,
    KeyResultDefinition,
    KeyResultKind,
    KPIDefined,
    KPIRecorded,
    Level,
    ObjectiveDefinition,
    ObjectiveScored,
    PaceStatus,
    parse_period,
)
from services.goal.__main__ import create_app
from services.goal.application import GoalApplication
from services.goal.commands import KeyResultCommand, ObjectiveCommand
from services.goal.domain import CataloguedKPI, unknown_kpi_warnings
from services.goal.policy import Notes
from services.goal.publishing import integration_event
from services.shared.consumer import TrackedConsumer
from services.shared.settings import Settings
from services.shared.store import store_environment

AT = datetime(2026, 3, 1, tzinfo=UTC)
EPOCH = "metrics-live"

# -- the rule ---------------------------------------------------------------------------------


def key_result(title: str, kind: KeyResultKind, kpi: str | None = None) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=title,
        title=title,
        kind=kind,
        baseline=None if kind is KeyResultKind.milestone else 0.0,
        target=None if kind is KeyResultKind.milestone else 10.0,
        kpi=kpi,
    )


def test_each_kpi_key_result_outside_the_catalogue_is_named_by_number_and_title() -> None:
    definition = ObjectiveDefinition(
        id="o-1",
        title="Grow sales",
        owner="ana",
        org_unit="sales",
        level=Level.team,
        period=parse_period("2026-Q4"),
        key_results=[
            key_result("Onboard customers", KeyResultKind.kpi, "new_customers"),
            key_result("Close deals", KeyResultKind.kpi, "typo_kpi"),
            key_result("Hire two reps", KeyResultKind.metric),
            key_result("Launch", KeyResultKind.milestone),
        ],
    )
    assert unknown_kpi_warnings(definition, {"new_customers"}.__contains__) == [
        "key result 2 ('Close deals'): KPI typo_kpi is not in the KPI catalogue"
    ]
    assert unknown_kpi_warnings(definition, {"new_customers", "typo_kpi"}.__contains__) == []


# -- the catalogue, noted from metrics.events -------------------------------------------------


@dataclass
class Record:
    """The parts of a Kafka record a consumer reads."""

    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    topic: str = METRICS_EVENTS
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


@dataclass
class DeadLetters:
    sent: list[tuple[Any, str, str]] = field(default_factory=list)

    async def send(self, record: Any, reason: str, kind: str) -> None:
        self.sent.append((record, reason, kind))


def envelope(position: int, key: str) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4(),
        "position": position,
        "epoch": EPOCH,
        "aggregate_id": key,
        "aggregate_version": position,
        "occurred_at": AT,
        "actor": "metrics",
    }


def defined(position: int, key: str, owner: str = "ana") -> KPIDefined:
    payload = {
        "key": key,
        "name": key.replace("_", " "),
        "direction": "higher_is_better",
        "target": 100,
        "interval": "P1D",
        "interval_seconds": 86400,
        "owner": owner,
    }
    return KPIDefined.model_validate(envelope(position, key) | {"payload": payload})


def recorded(position: int, key: str) -> KPIRecorded:
    payload = {
        "kpi": key,
        "value": float(position),
        "observed_at": AT,
        "source": "crm",
        "reading_id": f"r-{position}",
        "health": "healthy",
    }
    return KPIRecorded.model_validate(envelope(position, key) | {"payload": payload})


#: Where the metrics service's positions count: consumers track (origin, position).
ORIGIN = defined(1, "any").origin


def relayed(event: Envelope) -> Record:
    """As the outbox relay sends it: with the event type in a header, on the event's topic."""
    return Record(event.to_json(), [("event_type", event.event_type.encode())], event.topic)


@dataclass
class Goal:
    app: GoalApplication
    dead_letters: DeadLetters
    consumer: TrackedConsumer

    def consume(self, *records: Record) -> None:
        asyncio.run(self.consumer.handle_batch(records))


def open_goal(data_dir: Path) -> Goal:
    app = GoalApplication(env=store_environment(Settings(service="goal", data_dir=data_dir)))
    dead_letters = DeadLetters()
    consumer = TrackedConsumer(app, Notes(), dead_letters, Notes.event_types)  # type: ignore[arg-type]
    return Goal(app, dead_letters, consumer)


@pytest.fixture
def goal(tmp_path: Path) -> Iterator[Goal]:
    opened = open_goal(tmp_path)
    yield opened
    opened.app.close()


def sales_command(kpi: str) -> ObjectiveCommand:
    return ObjectiveCommand(
        title="Grow sales",
        owner="ana",
        org_unit="sales",
        level=Level.team,
        period="2026-Q4",
        key_results=[
            KeyResultCommand(
                title="Hire two reps", kind=KeyResultKind.metric, baseline=0, target=2
            ),
            KeyResultCommand(
                title="Close deals", kind=KeyResultKind.kpi, kpi=kpi, baseline=0, target=40
            ),
        ],
    )


TYPO = "key result 2 ('Close deals'): KPI typo_kpi is not in the KPI catalogue"


def test_posting_or_putting_a_kpi_outside_the_catalogue_warns_at_once(goal: Goal) -> None:
    goal.consume(relayed(defined(1, "deals_closed")))
    created, warnings = goal.app.create_objective(sales_command("typo_kpi"), "ana")
    assert warnings == [TYPO]
    assert goal.app.get_objective(created.id).definition.key_results[1].kpi == "typo_kpi"

    fixed, warnings = goal.app.redefine_objective(created.id, sales_command("deals_closed"), "ana")
    assert warnings == []
    _, warnings = goal.app.redefine_objective(fixed.id, sales_command("typo_kpi"), "ana")
    assert warnings == [TYPO]


def test_the_catalogue_is_kept_in_goals_own_log_and_survives_a_restart(tmp_path: Path) -> None:
    first = open_goal(tmp_path)
    first.consume(relayed(defined(1, "deals_closed")))
    first.app.close()
    again = open_goal(tmp_path)
    try:
        assert again.app.in_kpi_catalogue("deals_closed")
        assert not again.app.in_kpi_catalogue("typo_kpi")
        # Redelivered after the restart: applied once, by its tracking record.
        head = again.app.max_position()
        again.consume(relayed(defined(1, "deals_closed")))
        assert again.app.max_position() == head
    finally:
        again.app.close()


def test_a_kpi_redefined_is_noted_once_and_never_published(goal: Goal) -> None:
    goal.consume(relayed(defined(1, "deals_closed")), relayed(defined(2, "deals_closed", "bo")))
    goal.consume(relayed(defined(3, "deals_closed", "cy")))
    notifications = goal.app.recorder.select_notifications(1, 100)
    events = [goal.app.mapper.to_domain_event(n) for n in notifications]
    assert [type(e) for e in events] == [CataloguedKPI.Noted]
    assert integration_event(events[0], 1) is None  # goal.events carries objectives only
    tracked = goal.app.tracking_recorder.select_tracked(ORIGIN, [1, 2, 3])
    assert tracked == {1, 2, 3}


def skipped_count() -> float:
    labels = {"topic": METRICS_EVENTS, "outcome": "skipped"}
    return REGISTRY.get_sample_value("okr_consumer_messages_total", labels) or 0.0


def test_readings_are_skipped_unread_and_a_batch_of_them_stores_nothing(
    goal: Goal, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_transaction(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a batch of readings alone wrote to the store")

    monkeypatch.setattr(goal.app, "record_batch", no_transaction)
    before = skipped_count()
    readings = [relayed(recorded(position, "deals_closed")) for position in range(1, 501)]
    # The header is enough: a reading's body is not even parsed.
    readings.append(Record(b"{not json", [("event_type", b"KPIRecorded")]))
    goal.consume(*readings)
    assert skipped_count() - before == 501
    assert goal.dead_letters.sent == []
    assert goal.app.max_position() == 0


def test_only_the_definitions_in_a_mixed_batch_are_tracked(goal: Goal) -> None:
    without_header = Record(recorded(3, "deals_closed").to_json())  # parsed, then skipped
    goal.consume(
        relayed(recorded(1, "deals_closed")),
        relayed(defined(2, "deals_closed")),
        without_header,
        relayed(recorded(4, "deals_closed")),
    )
    tracked = goal.app.tracking_recorder.select_tracked(ORIGIN, [1, 2, 3, 4])
    assert tracked == {2}
    assert goal.app.in_kpi_catalogue("deals_closed")
    # Bad input the goal service does act on still goes to the DLQ.
    goal.consume(Record(b"{not json", [("event_type", b"KPIDefined")]))
    assert [kind for _, _, kind in goal.dead_letters.sent] == ["not_json"]


def objective_scored(position: int, objective_id: uuid.UUID, score: float) -> ObjectiveScored:
    payload = {
        "objective_id": str(objective_id),
        "score": score,
        "expected": 0.2,
        "status": PaceStatus.on_track,
        "as_of": AT,
    }
    return ObjectiveScored.model_validate(
        envelope(position, str(objective_id)) | {"epoch": "alignment-live", "payload": payload}
    )


def gap_detected(position: int) -> GapDetected:
    payload = {
        "gap_id": "kpi_unaddressed:deals_closed",
        "kind": "kpi_unaddressed",
        "subject": "deals_closed",
        "message": "deals_closed is unhealthy and no active key result moves it",
        "owner": "ana",
    }
    return GapDetected.model_validate(
        envelope(position, "gaps") | {"epoch": "alignment-live", "payload": payload}
    )


def test_one_batch_from_both_topics_notes_the_scores_and_the_catalogue(goal: Goal) -> None:
    created, _ = goal.app.create_objective(sales_command("deals_closed"), "ana")
    before = goal.app.max_position()
    goal.consume(
        relayed(recorded(1, "deals_closed")),
        relayed(objective_scored(1, created.id, 0.25)),
        relayed(defined(2, "deals_closed")),
        relayed(gap_detected(2)),
        relayed(objective_scored(3, created.id, 0.5)),
    )
    scores = goal.app.scores(created.id)
    assert scores is not None
    assert scores.objective is not None
    assert scores.objective["score"] == 0.5  # the batch's latest score, noted alone
    assert goal.app.in_kpi_catalogue("deals_closed")
    notifications = goal.app.recorder.select_notifications(before + 1, 100)
    noted = [type(goal.app.mapper.to_domain_event(n)).__qualname__ for n in notifications]
    assert sorted(noted) == [
        "CataloguedKPI.Noted",
        "ObjectiveScores.ObjectiveScoreNoted",
        "ObjectiveScores.Started",
    ]
    # Gaps and readings are not goal's: skipped, so not tracked.
    scored_origin = objective_scored(1, created.id, 0).origin
    assert goal.app.tracking_recorder.select_tracked(scored_origin, [1, 2, 3]) == {1, 3}
    assert goal.app.tracking_recorder.select_tracked(ORIGIN, [1, 2]) == {2}
    assert goal.dead_letters.sent == []


def test_the_goal_service_reads_both_topics_through_one_consumer_that_gathers_longer(
    tmp_path: Path,
) -> None:
    settings = Settings(service="goal", data_dir=tmp_path, auth_disabled=True)
    app = create_app(settings)
    [subscriber] = app.state.runtime.broker.subscribers
    assert subscriber.topic_names == [ALIGNMENT_EVENTS, METRICS_EVENTS]
    # Scores are for display: batches gather longer than on the latency path.
    wait_ms = subscriber._connection_args["fetch_max_wait_ms"]
    assert wait_ms == round(settings.goal_notes_fetch_wait_seconds * 1000)
    assert settings.goal_notes_fetch_wait_seconds > settings.consumer_fetch_wait_seconds
    app.state.runtime.application.close()
