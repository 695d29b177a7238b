"""The alignment application on a temporary SQLite store, driven the way the tracked consumer
drives it (a unit of work per batch, ``policy.apply`` per event, ``policy.finish``, then
``record_batch`` with the tracking records): scoring of the seed examples, late and
out-of-period readings, order independence, roll-ups, what is published, gaps, archiving,
re-evaluation as time passes, and rebuilding from the stored log."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Recording, Tracking

from contracts import (
    Aggregation,
    Direction,
    Envelope,
    GapDetected,
    GapKind,
    GapResolved,
    Health,
    KeyResultCheckedIn,
    KeyResultDefinition,
    KeyResultKind,
    KeyResultScored,
    KPIDefined,
    KPIDefinition,
    KPIRecorded,
    Level,
    ObjectiveArchived,
    ObjectiveDefinition,
    ObjectiveSet,
    ObjectiveType,
    PaceStatus,
    parse_period,
    stable_event_id,
)
from services.alignment import evaluation as evaluation_rules
from services.alignment.application import AlignmentApplication
from services.alignment.domain import GapBoard, ObjectiveTrack
from services.alignment.policy import AlignmentPolicy
from services.alignment.publishing import integration_event
from services.shared.consumer import UnitOfWork
from services.shared.settings import Settings
from services.shared.store import store_environment
from tests.support import sent_envelope

#: The instant the batches are applied at (early in 2026: about 16% of the year elapsed).
NOW = datetime(2026, 3, 2, tzinfo=UTC)
MONTH = 30 * 24 * 3600.0

# -- the service, fed batch by batch -----------------------------------------------------------


@dataclass
class Alignment:
    """An alignment application and its policy, with a batch helper that does what
    ``TrackedConsumer._apply_once`` does."""

    app: AlignmentApplication
    policy: AlignmentPolicy

    def batch(self, *events: Envelope) -> list[Recording[UUID]]:
        unit = UnitOfWork(self.app)
        for event in events:
            self.policy.apply(event, unit)
        self.policy.finish(unit)
        trackings = [Tracking(event.origin, event.position) for event in events]
        return self.app.record_batch(unit.processing_event(), trackings)

    def at(self, instant: datetime) -> None:
        self.policy.clock = lambda: instant


def open_service(data_dir: Path) -> Alignment:
    env = store_environment(Settings(service="alignment", data_dir=data_dir))
    application = AlignmentApplication(env=env)
    policy = AlignmentPolicy(application)
    policy.clock = lambda: NOW
    return Alignment(application, policy)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Alignment]:
    opened = open_service(tmp_path)
    yield opened
    opened.app.close()


# -- contract events as the goal and metrics services publish them ----------------------------


@dataclass
class Feed:
    """Builds envelopes with increasing producer positions and per-aggregate versions."""

    positions: dict[str, int] = field(default_factory=lambda: {"goal": 0, "metrics": 0})
    versions: dict[tuple[str, str], int] = field(default_factory=dict)

    def _envelope(self, producer: str, aggregate_id: str, at: datetime) -> dict[str, Any]:
        self.positions[producer] += 1
        version = self.versions.get((producer, aggregate_id), 0) + 1
        self.versions[(producer, aggregate_id)] = version
        return {
            "event_id": stable_event_id(producer, aggregate_id, version),
            "producer": producer,
            "position": self.positions[producer],
            "aggregate_id": aggregate_id,
            "aggregate_version": version,
            "occurred_at": at,
            "actor": "alice" if producer == "goal" else "metrics",
        }

    def objective(self, definition: ObjectiveDefinition) -> ObjectiveSet:
        fields = self._envelope("goal", definition.id, NOW - timedelta(days=1))
        return ObjectiveSet.model_validate({**fields, "payload": definition})

    def archive(self, objective_id: str) -> ObjectiveArchived:
        fields = self._envelope("goal", objective_id, NOW - timedelta(hours=1))
        payload = {"objective_id": objective_id, "reason": "superseded"}
        return ObjectiveArchived.model_validate({**fields, "payload": payload})

    def check_in(self, objective_id: str, key_result_id: str, **values: Any) -> KeyResultCheckedIn:
        fields = self._envelope("goal", objective_id, NOW - timedelta(hours=1))
        payload = {"objective_id": objective_id, "key_result_id": key_result_id, **values}
        return KeyResultCheckedIn.model_validate({**fields, "payload": payload})

    def kpi(
        self,
        key: str,
        *,
        direction: Direction = Direction.higher_is_better,
        target: float = 100.0,
        warning: float | None = None,
        interval_seconds: float = MONTH,
        owner: str | None = None,
    ) -> KPIDefined:
        fields = self._envelope("metrics", key, NOW - timedelta(days=1))
        definition = KPIDefinition(
            key=key,
            name=key.replace("_", " "),
            direction=direction,
            target=target,
            warning=warning,
            interval="P30D",
            interval_seconds=interval_seconds,
            owner=owner,
        )
        return KPIDefined.model_validate({**fields, "payload": definition})

    def reading(
        self,
        key: str,
        value: float,
        observed_at: datetime,
        *,
        health: Health = Health.healthy,
        arrived: datetime = NOW - timedelta(hours=1),
    ) -> KPIRecorded:
        fields = self._envelope("metrics", key, arrived)
        payload = {
            "kpi": key,
            "value": value,
            "observed_at": observed_at,
            "source": "billing",
            "reading_id": f"{key}-{fields['position']}",
            "health": health,
        }
        return KPIRecorded.model_validate({**fields, "payload": payload})


def day(month: int, dom: int, year: int = 2026) -> datetime:
    return datetime(year, month, dom, 12, tzinfo=UTC)


# -- definitions: the seed articles' examples ---------------------------------------------------


def kpi_kr(
    key_result_id: str,
    title: str,
    kpi: str,
    aggregation: Aggregation,
    baseline: float,
    target: float,
    weight: float = 1.0,
) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=key_result_id,
        title=title,
        kind=KeyResultKind.kpi,
        kpi=kpi,
        aggregation=aggregation,
        baseline=baseline,
        target=target,
        weight=weight,
    )


def metric_kr(
    key_result_id: str, title: str, baseline: float, target: float
) -> KeyResultDefinition:
    return KeyResultDefinition(
        id=key_result_id, title=title, kind=KeyResultKind.metric, baseline=baseline, target=target
    )


def objective(
    objective_id: str,
    title: str,
    key_results: list[KeyResultDefinition],
    *,
    level: Level = Level.company,
    period: str = "2026",
    weight: float = 1.0,
    parent_id: str | None = None,
    parent_key_result_id: str | None = None,
    type: ObjectiveType = ObjectiveType.committed,
) -> ObjectiveDefinition:
    return ObjectiveDefinition(
        id=objective_id,
        title=title,
        owner="ceo",
        org_unit="company",
        level=level,
        period=parse_period(period),
        weight=weight,
        parent_id=parent_id,
        parent_key_result_id=parent_key_result_id,
        type=type,
        key_results=key_results,
    )


CHATBOTS = objective(
    "obj-chatbots",
    "Become the #1 provider of AI-powered chatbots",
    [
        kpi_kr("kr-arr", "Achieve $10M ARR", "arr", Aggregation.latest, 0, 10_000_000, weight=2),
        kpi_kr(
            "kr-customers", "Onboard 300 new customers", "new_customers", Aggregation.sum, 0, 300
        ),
    ],
)


def seed_readings(feed: Feed) -> list[list[KPIRecorded]]:
    """Three batches of readings for the chatbots objective's KPIs."""
    return [
        [
            feed.reading("arr", 2_000_000, day(1, 31)),
            feed.reading("new_customers", 40, day(1, 20)),
            feed.reading("new_customers", 20, day(2, 10)),
        ],
        [
            feed.reading("arr", 5_000_000, day(2, 28)),
            # Arrives after the 5M one but was observed before: it is not the latest.
            feed.reading("arr", 3_000_000, day(2, 15)),
            feed.reading("new_customers", 30, day(2, 20)),
            # Observed before the period: not part of the objective's year.
            feed.reading("new_customers", 10, day(12, 31, 2025)),
        ],
        [
            # Late: observed earlier than the current latest (28 Feb).
            feed.reading("arr", 4_000_000, day(2, 20)),
            feed.reading("new_customers", 50, day(2, 25)),
            # The period ends at the end of 31 Dec 2026: the first instant of 2027 is outside.
            feed.reading("new_customers", 1000, datetime(2027, 1, 1, tzinfo=UTC)),
        ],
    ]


# -- reading the log ---------------------------------------------------------------------------


def stored(recordings: Sequence[Recording[UUID]], kind: type) -> list[Any]:
    return [r.domain_event for r in recordings if isinstance(r.domain_event, kind)]


def evaluated(recordings: Sequence[Recording[UUID]]) -> Counter[str]:
    """How many evaluations of each key result a batch recorded."""
    return Counter(e.key_result_id for e in stored(recordings, ObjectiveTrack.KeyResultEvaluated))


def published(recordings: Sequence[Recording[UUID]]) -> list[Envelope]:
    publications = [integration_event(r.domain_event, r.notification.id) for r in recordings]
    return [sent_envelope(p) for p in publications if p is not None]


def gap_ids(service: Alignment) -> set[str]:
    return {gap["gap_id"] for gap in service.app.open_gaps()}


# -- 1. the seed example: latest and sum over the period, late and outside readings ----------


def test_seed_example_scores_kpi_key_results_once_per_batch(service: Alignment) -> None:
    feed = Feed()
    definition = service.batch(
        feed.kpi("arr", target=10_000_000),
        feed.kpi("new_customers", target=300),
        feed.objective(CHATBOTS),
    )
    assert evaluated(definition) == {"kr-arr": 1, "kr-customers": 1}
    batches = seed_readings(feed)

    first = service.batch(*batches[0])
    track = service.app.track("obj-chatbots")
    assert track.evaluations["kr-arr"]["value"] == 2_000_000
    assert track.evaluations["kr-arr"]["score"] == pytest.approx(0.2)
    assert track.evaluations["kr-customers"]["value"] == 60
    assert track.evaluations["kr-customers"]["score"] == pytest.approx(0.2)
    # Two readings of new_customers in the batch: still one evaluation of its key result.
    assert evaluated(first) == {"kr-arr": 1, "kr-customers": 1}

    second = service.batch(*batches[1])
    track = service.app.track("obj-chatbots")
    assert track.evaluations["kr-arr"]["value"] == 5_000_000  # latest by observed time
    assert track.evaluations["kr-arr"]["score"] == pytest.approx(0.5)
    assert track.evaluations["kr-customers"]["value"] == 90  # the 2025 reading is ignored
    assert track.evaluations["kr-customers"]["score"] == pytest.approx(0.3)
    assert evaluated(second) == {"kr-arr": 1, "kr-customers": 1}

    third = service.batch(*batches[2])
    track = service.app.track("obj-chatbots")
    arr, customers = track.stats["kr-arr"], track.stats["kr-customers"]
    assert arr.latest is not None
    assert (arr.latest.value, arr.latest.observed_at) == (5_000_000, day(2, 28))
    assert arr.count == 4
    assert (customers.count, customers.total) == (4, 140)
    assert track.evaluations["kr-arr"]["value"] == 5_000_000
    assert track.evaluations["kr-arr"]["score"] == pytest.approx(0.5)
    assert track.evaluations["kr-arr"]["status"] == PaceStatus.on_track
    assert track.evaluations["kr-customers"]["value"] == 140
    assert track.evaluations["kr-customers"]["score"] == pytest.approx(140 / 300)
    assert evaluated(third) == {"kr-arr": 1, "kr-customers": 1}
    # The late reading is cited nowhere: the 5M reading still determines the value.
    (late_evaluation,) = [
        e for e in stored(third, ObjectiveTrack.KeyResultEvaluated) if e.key_result_id == "kr-arr"
    ]
    assert [item["reading_id"] for item in late_evaluation.lineage] == [arr.latest.reading_id]
    assert late_evaluation.published is False  # stats changed, score and status did not

    # Objective score: mean of the key results' scores weighted 2 (ARR) and 1 (customers).
    assert track.evaluation is not None
    assert track.evaluation["score"] == pytest.approx((2 * 0.5 + 140 / 300) / 3)
    assert track.evaluation["status"] == PaceStatus.on_track
    # Every reading reached the KPI's track, in or out of the period.
    kpi = service.app.kpi_track("new_customers")
    assert kpi is not None
    assert kpi.readings == 6


# -- 2. order independence ----------------------------------------------------------------------


def snapshot(service: Alignment, objective_id: str) -> dict[str, Any]:
    """What must not depend on the order the inputs arrived in."""
    track = service.app.track(objective_id)
    assert track.evaluation is not None
    keep = ("value", "progress", "score", "status")
    return {
        "stats": track.stats,
        "evaluations": {
            kr: {name: e[name] for name in keep} for kr, e in track.evaluations.items()
        },
        "latest_lineage": track.evaluations["kr-arr"]["lineage"],
        "objective": (track.evaluation["score"], track.evaluation["status"]),
        "gaps": gap_ids(service),
    }


@pytest.mark.parametrize("objective_at", [0, 1, 2, 3], ids=["first", "mid", "mid-late", "last"])
def test_readings_before_the_objective_are_backfilled(tmp_path: Path, objective_at: int) -> None:
    """The objective arrives before all readings, or in the same batch as some of them, or
    after all of them (another topic, consumed later): the scores are the same."""
    feed = Feed()
    kpis = [feed.kpi("arr", target=10_000_000), feed.kpi("new_customers", target=300)]
    goal = feed.objective(CHATBOTS)
    batches = seed_readings(feed)

    reference = open_service(tmp_path / "reference")
    reference.batch(*kpis, goal)
    for readings in batches:
        reference.batch(*readings)

    reordered = open_service(tmp_path / "reordered")
    reordered.batch(*kpis)
    for index, readings in enumerate(batches):
        if index == objective_at:
            # Readings first, then the objective, in one batch.
            reordered.batch(*readings[:1], goal, *readings[1:])
        else:
            reordered.batch(*readings)
    if objective_at == len(batches):
        reordered.batch(goal)

    expected = snapshot(reference, "obj-chatbots")
    assert expected["evaluations"]["kr-customers"]["score"] == pytest.approx(140 / 300)
    assert snapshot(reordered, "obj-chatbots") == expected
    reference.app.close()
    reordered.app.close()


def test_a_backfill_cites_at_most_max_lineage_readings(
    service: Alignment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sum over more readings than an evaluation may cite: every reading counts, the first
    ``MAX_LINEAGE`` are cited, in the order they were applied."""
    monkeypatch.setattr(evaluation_rules, "MAX_LINEAGE", 3)
    feed = Feed()
    service.batch(feed.kpi("new_customers", target=300))
    readings = [feed.reading("new_customers", 10 + n, day(3, 1 + n)) for n in range(5)]
    service.batch(*readings)
    service.batch(feed.objective(CHATBOTS))
    evaluation = service.app.track("obj-chatbots").evaluations["kr-customers"]
    assert evaluation["value"] == 10 + 11 + 12 + 13 + 14
    assert [cited["reading_id"] for cited in evaluation["lineage"]] == [
        r.payload.reading_id for r in readings[:3]
    ]


# -- 3. metric, milestone and "lower is better" key results -----------------------------------


def test_check_ins_score_metric_milestone_and_decreasing_key_results(service: Alignment) -> None:
    feed = Feed()
    loyalty = objective(
        "obj-loyalty",
        "Improve customer loyalty",
        [
            metric_kr("kr-nps", "Raise NPS from 30 to 45", 30, 45),
            KeyResultDefinition(
                id="kr-programme",
                title="Launch a loyalty programme",
                kind=KeyResultKind.milestone,
                checklist=["design", "pilot", "pricing", "roll out"],
            ),
            metric_kr("kr-churn", "Reduce churn from 8% to 5%", 8, 5),
            KeyResultDefinition(id="kr-survey", title="Run a survey", kind=KeyResultKind.milestone),
        ],
    )
    service.batch(feed.objective(loyalty))
    track = service.app.track("obj-loyalty")
    assert {kr: e["score"] for kr, e in track.evaluations.items()} == {
        "kr-nps": 0.0,
        "kr-programme": 0.0,
        "kr-churn": 0.0,
        "kr-survey": 0.0,
    }

    service.batch(
        feed.check_in("obj-loyalty", "kr-nps", value=33),
        feed.check_in("obj-loyalty", "kr-nps", value=39),  # the later check-in counts
        feed.check_in("obj-loyalty", "kr-programme", checklist_done=["design", "pilot", "x"]),
        feed.check_in("obj-loyalty", "kr-churn", value=6.5),
        feed.check_in("obj-loyalty", "kr-survey", done=True),
    )
    track = service.app.track("obj-loyalty")
    scores = {kr: e["score"] for kr, e in track.evaluations.items()}
    assert scores == pytest.approx(
        {"kr-nps": 0.6, "kr-programme": 0.5, "kr-churn": 0.5, "kr-survey": 1.0}
    )
    assert track.evaluations["kr-churn"]["value"] == 6.5
    assert track.evaluation is not None
    assert track.evaluation["score"] == pytest.approx((0.6 + 0.5 + 0.5 + 1.0) / 4)

    # Churn above its baseline: negative progress, score clamped at 0; a confidence-only
    # check-in keeps the value; churn beyond its target: achieved.
    service.batch(
        feed.check_in("obj-loyalty", "kr-churn", value=9),
        feed.check_in("obj-loyalty", "kr-nps", confidence=7),
    )
    track = service.app.track("obj-loyalty")
    assert track.evaluations["kr-churn"]["progress"] == pytest.approx(-1 / 3)
    assert track.evaluations["kr-churn"]["score"] == 0.0
    assert track.evaluations["kr-nps"]["value"] == 39
    service.batch(feed.check_in("obj-loyalty", "kr-churn", value=4))
    churn = service.app.track("obj-loyalty").evaluations["kr-churn"]
    assert (churn["score"], churn["status"]) == (1.0, PaceStatus.achieved)


# -- 4. roll-ups --------------------------------------------------------------------------------

ROLLUP = KeyResultDefinition(
    id="kr-teams", title="Teams hit their goals", kind=KeyResultKind.rollup
)
COMPANY = objective("obj-company", "Delight our customers", [ROLLUP])


def child(objective_id: str, weight: float) -> ObjectiveDefinition:
    return objective(
        objective_id,
        f"Team goal {objective_id}",
        [metric_kr(f"{objective_id}-kr", "Ship features", 0, 10)],
        level=Level.team,
        weight=weight,
        parent_id="obj-company",
        parent_key_result_id="kr-teams",
    )


def test_rollup_is_the_weighted_mean_of_the_children(service: Alignment) -> None:
    feed = Feed()
    service.batch(feed.objective(COMPANY))
    service.batch(feed.objective(child("obj-a", 1)), feed.objective(child("obj-b", 3)))
    service.batch(
        feed.check_in("obj-a", "obj-a-kr", value=4), feed.check_in("obj-b", "obj-b-kr", value=8)
    )
    parent = service.app.track("obj-company")
    assert parent.evaluations["kr-teams"]["score"] == pytest.approx((0.4 * 1 + 0.8 * 3) / 4)
    assert parent.evaluation is not None
    assert parent.evaluation["score"] == pytest.approx(0.7)

    # One child's key result changes: the parent follows in the same batch, evaluated once.
    recordings = service.batch(feed.check_in("obj-a", "obj-a-kr", value=10))
    parent = service.app.track("obj-company")
    assert parent.evaluations["kr-teams"]["score"] == pytest.approx((1.0 * 1 + 0.8 * 3) / 4)
    assert evaluated(recordings) == {"obj-a-kr": 1, "kr-teams": 1}
    scored = {
        (e.payload.objective_id, getattr(e.payload, "key_result_id", None))
        for e in published(recordings)
    }
    assert scored == {
        ("obj-a", "obj-a-kr"),
        ("obj-a", None),
        ("obj-company", "kr-teams"),
        ("obj-company", None),
    }


def test_a_parent_defined_after_its_children_rolls_them_up(service: Alignment) -> None:
    feed = Feed()
    service.batch(feed.objective(child("obj-a", 1)), feed.objective(child("obj-b", 3)))
    service.batch(feed.check_in("obj-b", "obj-b-kr", value=6))
    service.batch(feed.objective(COMPANY))
    parent = service.app.track("obj-company")
    assert parent.evaluations["kr-teams"]["score"] == pytest.approx(0.6 * 3 / 4)


def test_archiving_a_child_updates_the_rollup(service: Alignment) -> None:
    feed = Feed()
    service.batch(feed.objective(COMPANY))
    service.batch(feed.objective(child("obj-a", 1)), feed.objective(child("obj-b", 3)))
    service.batch(
        feed.check_in("obj-a", "obj-a-kr", value=4), feed.check_in("obj-b", "obj-b-kr", value=8)
    )
    service.batch(feed.archive("obj-b"))
    # Only obj-a (0.4) is left under the roll-up, as the rollup scoring itself excludes
    # inactive children.
    parent = service.app.track("obj-company")
    assert parent.evaluations["kr-teams"]["score"] == pytest.approx(0.4)


def test_rollup_is_evaluated_once_when_parent_and_children_change_together(
    service: Alignment,
) -> None:
    feed = Feed()
    # The parent's id sorts before its children's ("a-company" < "obj-a").
    parent = COMPANY.model_copy(update={"id": "a-company"})
    kids = [
        child(o, w).model_copy(update={"parent_id": "a-company"})
        for o, w in [("obj-a", 1), ("obj-b", 3)]
    ]
    service.batch(*(feed.objective(kid) for kid in kids))
    service.batch(feed.check_in("obj-b", "obj-b-kr", value=8))
    recordings = service.batch(feed.objective(parent), feed.check_in("obj-a", "obj-a-kr", value=4))
    rolled = service.app.track("a-company")
    assert rolled.evaluations["kr-teams"]["score"] == pytest.approx(0.7)
    scores = [
        e.payload.score
        for e in published(recordings)
        if isinstance(e, KeyResultScored) and e.payload.key_result_id == "kr-teams"
    ]
    assert scores == pytest.approx([0.7])
    assert evaluated(recordings) == {"obj-a-kr": 1, "kr-teams": 1}


# -- 5. published and internal evaluations ------------------------------------------------------


def test_only_changed_scores_are_published_with_their_lineage(service: Alignment) -> None:
    feed = Feed()
    growth = objective(
        "obj-growth",
        "Grow the user base",
        [
            kpi_kr("kr-dau", "Peak at 100k daily users", "dau", Aggregation.max, 0, 100_000),
            kpi_kr("kr-signups", "Get 1,000 sign-ups", "signups", Aggregation.sum, 0, 1000),
        ],
    )
    service.batch(feed.kpi("dau"), feed.kpi("signups"), feed.objective(growth))

    peak = feed.reading("dau", 50_000, day(2, 1))
    signups = [feed.reading("signups", 100, day(2, 1)), feed.reading("signups", 150, day(2, 2))]
    envelopes = published(service.batch(peak, *signups))
    by_kr = {
        e.payload.key_result_id: e.payload for e in envelopes if isinstance(e, KeyResultScored)
    }
    assert by_kr["kr-dau"].score == pytest.approx(0.5)
    # max: the one reading that determines the value.
    assert [
        (i.producer, i.event_type, i.position, i.reading_id) for i in by_kr["kr-dau"].lineage
    ] == [("metrics", "KPIRecorded", peak.position, peak.payload.reading_id)]
    assert by_kr["kr-dau"].lineage[0].observed_at == day(2, 1)
    # sum: every reading folded in by this evaluation.
    assert by_kr["kr-signups"].score == pytest.approx(0.25)
    assert [(i.position, i.reading_id) for i in by_kr["kr-signups"].lineage] == [
        (r.position, r.payload.reading_id) for r in signups
    ]

    # A lower reading changes the statistics (count) but not the max, so not the score.
    lower = service.batch(feed.reading("dau", 40_000, day(2, 3)))
    (evaluation,) = stored(lower, ObjectiveTrack.KeyResultEvaluated)
    assert evaluation.published is False
    assert evaluation.stats is not None
    assert evaluation.stats["count"] == 2
    assert published(lower) == []
    assert integration_event(evaluation, 999) is None
    assert stored(lower, ObjectiveTrack.ObjectiveEvaluated) == []

    higher = feed.reading("dau", 60_000, day(2, 4))
    (envelope,) = [e for e in published(service.batch(higher)) if isinstance(e, KeyResultScored)]
    assert envelope.aggregate_id == "obj-growth"
    assert envelope.payload.score == pytest.approx(0.6)
    assert [i.reading_id for i in envelope.payload.lineage] == [higher.payload.reading_id]
    # The history shows published evaluations only.
    assert [e.score for e, _ in service.app.key_result_history("kr-dau")] == pytest.approx(
        [0.0, 0.5, 0.6]
    )


# -- 6. gaps ------------------------------------------------------------------------------------

RETENTION = objective(
    "obj-retention",
    "Keep our customers",
    [kpi_kr("kr-churn", "Reduce churn from 8% to 5%", "churn_rate", Aggregation.latest, 8, 5)],
)


def churn_kpi(feed: Feed, owner: str | None = None) -> KPIDefined:
    return feed.kpi(
        "churn_rate", direction=Direction.lower_is_better, target=5, warning=6, owner=owner
    )


def test_an_unhealthy_kpi_without_key_result_is_a_gap_until_one_is_set(service: Alignment) -> None:
    feed = Feed()
    opened = service.batch(
        churn_kpi(feed), feed.reading("churn_rate", 8, day(2, 1), health=Health.unhealthy)
    )
    assert gap_ids(service) == {"kpi_unaddressed:churn_rate"}
    (gap,) = stored(opened, GapBoard.GapOpened)
    assert (gap.gap_id, gap.kind, gap.subject) == (
        "kpi_unaddressed:churn_rate",
        "kpi_unaddressed",
        "churn_rate",
    )
    (detected,) = published(opened)
    assert isinstance(detected, GapDetected)
    assert (detected.payload.kind, detected.payload.subject) == (
        GapKind.kpi_unaddressed,
        "churn_rate",
    )

    closed = service.batch(feed.objective(RETENTION))
    assert gap_ids(service) == set()
    (resolution,) = stored(closed, GapBoard.GapClosed)
    assert resolution.gap_id == "kpi_unaddressed:churn_rate"
    (resolved,) = [e for e in published(closed) if isinstance(e, GapResolved)]
    assert (resolved.payload.gap_id, resolved.payload.kind) == (
        "kpi_unaddressed:churn_rate",
        GapKind.kpi_unaddressed,
    )
    # The new key result was scored over the reading already there.
    assert service.app.track("obj-retention").evaluations["kr-churn"]["value"] == 8


def test_a_kpi_back_to_health_closes_its_gap(service: Alignment) -> None:
    feed = Feed()
    service.batch(
        churn_kpi(feed), feed.reading("churn_rate", 8, day(2, 1), health=Health.unhealthy)
    )
    service.batch(feed.reading("churn_rate", 4.5, day(2, 2), health=Health.healthy))
    assert gap_ids(service) == set()
    # A late unhealthy reading does not make the KPI unhealthy again: the latest one decides.
    service.batch(feed.reading("churn_rate", 9, day(1, 15), health=Health.unhealthy))
    assert gap_ids(service) == set()


def test_kpi_gaps_are_the_kpi_owners_and_follow_a_new_owner(service: Alignment) -> None:
    feed = Feed()
    opened = service.batch(
        churn_kpi(feed, owner="cfo"),
        feed.reading("churn_rate", 8, day(2, 1), health=Health.unhealthy),
    )
    (detected,) = published(opened)
    assert isinstance(detected, GapDetected)
    assert (detected.payload.gap_id, detected.payload.owner) == (
        "kpi_unaddressed:churn_rate",
        "cfo",
    )
    (gap,) = service.app.open_gaps()
    since = gap["since"]

    # Given to someone else: the open gap is detected again as theirs, and keeps its age.
    service.at(NOW + timedelta(hours=1))
    moved = service.batch(churn_kpi(feed, owner="coo"))
    assert stored(moved, GapBoard.GapClosed) == []
    (again,) = published(moved)
    assert isinstance(again, GapDetected)
    assert (again.payload.gap_id, again.payload.owner) == ("kpi_unaddressed:churn_rate", "coo")
    assert [(g["owner"], g["since"]) for g in service.app.open_gaps()] == [("coo", since)]
    # Nothing changed, nothing published.
    assert published(service.batch(churn_kpi(feed, owner="coo"))) == []


def test_a_key_result_on_an_undefined_kpi_says_so_until_the_kpi_is_defined(
    service: Alignment,
) -> None:
    feed = Feed()
    service.batch(feed.objective(RETENTION))
    (gap,) = service.app.open_gaps()
    assert gap["gap_id"] == "kr_without_data:kr-churn"
    assert gap["message"] == (
        "key result 'Reduce churn from 8% to 5%': KPI churn_rate is not defined in the KPI "
        "catalogue"
    )
    defined = service.batch(churn_kpi(feed))
    (detected,) = published(defined)
    assert isinstance(detected, GapDetected)
    assert detected.payload.message == (
        "key result 'Reduce churn from 8% to 5%': no reading of KPI churn_rate in the period"
    )
    assert [g["message"] for g in service.app.open_gaps()] == [detected.payload.message]


# -- 7. archive ---------------------------------------------------------------------------------


def test_an_archived_objective_is_no_longer_scored_and_its_gaps_close(service: Alignment) -> None:
    feed = Feed()
    team_retention = RETENTION.model_copy(update={"level": Level.team})  # aligned to nothing
    service.batch(
        churn_kpi(feed),
        feed.objective(team_retention),
        feed.reading("churn_rate", 6.5, day(2, 1), health=Health.unhealthy),
    )
    assert gap_ids(service) == {"orphan_objective:obj-retention"}
    before = service.app.track("obj-retention")
    assert before.evaluations["kr-churn"]["score"] == pytest.approx(0.5)

    archived = service.batch(feed.archive("obj-retention"))
    assert [g.gap_id for g in stored(archived, GapBoard.GapClosed)] == [
        "orphan_objective:obj-retention"
    ]
    # Nothing moves the unhealthy KPI any more.
    assert gap_ids(service) == {"kpi_unaddressed:churn_rate"}

    later = service.batch(feed.reading("churn_rate", 5, day(2, 10), health=Health.unhealthy))
    assert stored(later, ObjectiveTrack.KeyResultEvaluated) == []
    assert stored(later, ObjectiveTrack.ObjectiveEvaluated) == []
    after = service.app.track("obj-retention")
    assert after.evaluations == before.evaluations
    assert after.stats == before.stats
    # Nor is it re-evaluated as time passes.
    service.at(datetime(2026, 12, 1, tzinfo=UTC))
    assert service.policy.reevaluate() == 0


# -- 8. re-evaluation as time passes ------------------------------------------------------------


def test_reevaluate_records_statuses_that_change_with_time(service: Alignment) -> None:
    feed = Feed()
    hiring = objective(
        "obj-hiring", "Build the team", [metric_kr("kr-hires", "Hire 10 engineers", 0, 10)]
    )
    early = datetime(2026, 2, 1, tzinfo=UTC)
    service.at(early)
    service.batch(feed.objective(hiring), feed.check_in("obj-hiring", "kr-hires", value=3))
    track = service.app.track("obj-hiring")
    assert track.evaluations["kr-hires"]["status"] == PaceStatus.on_track
    assert service.policy.reevaluate() == 0  # nothing changed yet

    late = datetime(2026, 10, 1, tzinfo=UTC)  # 75% of the year gone, progress still 30%
    service.at(late)
    position = service.app.max_position()
    assert service.policy.reevaluate() == 1
    recordings = service.app.recorder.select_notifications(position + 1, 100)
    events = [service.app.mapper.to_domain_event(n) for n in recordings]
    (kr_event,) = [e for e in events if isinstance(e, ObjectiveTrack.KeyResultEvaluated)]
    assert (kr_event.status, kr_event.published, kr_event.as_of) == ("off_track", True, late)
    (objective_event,) = [e for e in events if isinstance(e, ObjectiveTrack.ObjectiveEvaluated)]
    assert objective_event.status == "off_track"
    track = service.app.track("obj-hiring")
    assert track.evaluations["kr-hires"]["progress"] == pytest.approx(0.3)
    assert track.evaluations["kr-hires"]["status"] == PaceStatus.off_track
    assert track.evaluation is not None
    assert track.evaluation["status"] == PaceStatus.off_track

    position = service.app.max_position()
    assert service.policy.reevaluate() == 0
    assert service.app.max_position() == position


def test_reevaluate_grades_objectives_when_their_period_closes(service: Alignment) -> None:
    feed = Feed()
    stretch = objective(
        "obj-stretch",
        "Moonshot",
        [metric_kr("kr-moon", "Sign 10 partners", 0, 10)],
        type=ObjectiveType.aspirational,
    )
    service.batch(feed.objective(stretch), feed.check_in("obj-stretch", "kr-moon", value=7))
    service.at(datetime(2027, 1, 1, tzinfo=UTC))
    assert service.policy.reevaluate() == 1
    evaluation = service.app.track("obj-stretch").evaluation
    assert evaluation is not None
    assert (evaluation["final"], evaluation["success"]) == (True, True)
    assert service.policy.reevaluate() == 0


def test_a_kpi_that_stops_reporting_becomes_a_stale_gap(service: Alignment) -> None:
    feed = Feed()
    service.batch(
        feed.kpi("arr", target=10_000_000, interval_seconds=24 * 3600.0),
        feed.objective(CHATBOTS),
        feed.reading("arr", 5_000_000, day(3, 1), arrived=NOW),
        feed.reading("new_customers", 10, day(3, 1), arrived=NOW),
    )
    assert "stale_kpi:arr" not in gap_ids(service)
    service.at(NOW + timedelta(days=3))  # no reading for three times the interval
    service.policy.reevaluate()
    assert "stale_kpi:arr" in gap_ids(service)


def test_gaps_a_batch_leaves_pending_are_settled_by_the_timer(
    service: Alignment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most one settlement per ``gap_settle_seconds`` after batches: the batches in
    between leave the gaps to ``settle_pending_gaps``, which keeps them pending when it
    cannot record them. Objectives set or archived are settled at once."""
    service.policy.gap_settle_seconds = 3600.0
    feed = Feed()
    service.batch(churn_kpi(feed))  # the first batch settles
    service.batch(feed.reading("churn_rate", 8, day(2, 1), health=Health.unhealthy))
    assert gap_ids(service) == set()

    def refuse(*args: Any) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(service.app, "record_batch", refuse)
        with pytest.raises(OSError, match="disk full"):
            service.policy.settle_pending_gaps()
    assert service.policy.settle_pending_gaps() is True
    assert gap_ids(service) == {"kpi_unaddressed:churn_rate"}
    assert service.policy.settle_pending_gaps() is False  # nothing left

    service.batch(feed.objective(RETENTION))
    assert gap_ids(service) == set()


def test_kpi_health_follows_the_latest_reading_whatever_its_offset(service: Alignment) -> None:
    feed = Feed()
    plus_two = timezone(timedelta(hours=2))
    service.batch(
        churn_kpi(feed),
        # 1 March 00:30 UTC: the latest reading, healthy.
        feed.reading("churn_rate", 4.5, datetime(2026, 3, 1, 0, 30, tzinfo=UTC)),
    )
    # 28 February 23:00 UTC (written in UTC+2): earlier, so its health must not count.
    service.batch(
        feed.reading(
            "churn_rate", 9, datetime(2026, 3, 1, 1, 0, tzinfo=plus_two), health=Health.unhealthy
        )
    )
    kpi = service.app.kpi_track("churn_rate")
    assert kpi is not None
    assert kpi.health is Health.healthy


# -- 9. rebuild from the stored log -------------------------------------------------------------


def test_a_second_application_on_the_same_store_has_the_same_state(tmp_path: Path) -> None:
    first = open_service(tmp_path)
    feed = Feed()
    first.batch(
        feed.kpi("arr", target=10_000_000),
        feed.kpi("new_customers", target=300),
        churn_kpi(feed),
        feed.objective(CHATBOTS),
        feed.objective(COMPANY),
        feed.objective(child("obj-a", 1)),
    )
    for readings in seed_readings(feed):
        first.batch(*readings)
    first.batch(
        feed.reading("churn_rate", 8, day(2, 1), health=Health.unhealthy),
        feed.check_in("obj-a", "obj-a-kr", value=5),
        feed.objective(child("obj-orphan", 1).model_copy(update={"parent_id": None})),
    )
    expected_gaps = {
        "kpi_unaddressed:churn_rate",
        "orphan_objective:obj-orphan",
        "kr_without_data:obj-orphan-kr",
    }
    assert gap_ids(first) == expected_gaps

    second = open_service(tmp_path)
    assert second.app.objectives == first.app.objectives
    assert second.app.kpi_links == first.app.kpi_links
    assert second.app.kpis == first.app.kpis
    originals = {t.objective_id: t for t in first.app.tracks()}
    rebuilt = {t.objective_id: t for t in second.app.tracks()}
    assert set(rebuilt) == {"obj-chatbots", "obj-company", "obj-a", "obj-orphan"}
    for objective_id, track in originals.items():
        again = rebuilt[objective_id]
        assert again.evaluations == track.evaluations
        assert again.evaluation == track.evaluation
        assert again.stats == track.stats
        assert again.check_ins == track.check_ins
        assert again.definition == track.definition
    assert rebuilt["obj-chatbots"].stats["kr-customers"].total == 140
    assert rebuilt["obj-company"].evaluations["kr-teams"]["score"] == pytest.approx(0.5)
    assert second.app.open_gaps() == first.app.open_gaps()
    assert {g["gap_id"] for g in second.app.open_gaps()} == expected_gaps
    for key in ("arr", "new_customers", "churn_rate"):
        kpi, again_kpi = first.app.kpi_track(key), second.app.kpi_track(key)
        assert kpi is not None
        assert again_kpi is not None
        assert (again_kpi.health, again_kpi.readings) == (kpi.health, kpi.readings)

    # The rebuilt service goes on from there: a new reading folds into the restored stats.
    second.batch(feed.reading("new_customers", 60, day(3, 1)))
    customers = second.app.track("obj-chatbots").evaluations["kr-customers"]
    assert customers["value"] == 200
    first.app.close()
    second.app.close()


def test_an_unhealthy_kpi_that_does_not_move_is_named_stagnant(service: Alignment) -> None:
    feed = Feed()
    flat = [
        feed.reading(
            "churn_rate", 8 + (n % 2) * 0.01, day(2, 1) + timedelta(days=n), health=Health.unhealthy
        )
        for n in range(20)  # unhealthy for 20 days, moving 0.01 where 1.0 is meaningful
    ]
    service.at(day(2, 21))
    opened = service.batch(churn_kpi(feed), *flat)
    (gap,) = stored(opened, GapBoard.GapOpened)
    assert gap.gap_id == "kpi_unaddressed:churn_rate"
    assert "is stagnant" in gap.message


def test_an_unhealthy_kpi_that_moves_is_not_named_stagnant(service: Alignment) -> None:
    feed = Feed()
    moving = [
        feed.reading(
            "churn_rate", 8 + n * 0.2, day(2, 1) + timedelta(days=n), health=Health.unhealthy
        )
        for n in range(20)
    ]
    service.at(day(2, 21))
    opened = service.batch(churn_kpi(feed), *moving)
    (gap,) = stored(opened, GapBoard.GapOpened)
    assert "is unhealthy" in gap.message


def test_a_copy_of_a_cached_track_changes_independently() -> None:
    """The repository's cache hands out copies (``__deepcopy__``): what one batch changes in
    place on its copy must not reach the cached track, whatever the batch then does."""
    from services.alignment.domain import KPITrack, to_micros
    from services.alignment.scoring import ReadingRef, WindowStats

    track = ObjectiveTrack("obj-chatbots", CHATBOTS.model_dump(mode="json"), 1)
    track.stats["kr-customers"] = WindowStats()
    track.stats["kr-customers"].add(ReadingRef("r1", 5.0, day(1, 2), 1))
    track.check_in("kr-arr", 7.0, None, None, 5, 2)
    original = (track.stats["kr-customers"].count, dict(track.check_ins), track.version)

    clone = copy.deepcopy(track)
    assert clone.definition is track.definition  # frozen: shared, not copied
    clone.stats["kr-customers"].add(ReadingRef("r2", 6.0, day(1, 3), 3))
    clone.stats["kr-new"] = WindowStats()
    clone.check_in("kr-arr", 9.0, None, None, None, 4)
    clone.redefine(CHATBOTS.model_dump(mode="json"), 5)

    assert (track.stats["kr-customers"].count, track.check_ins, track.version) == original
    assert "kr-new" not in track.stats
    assert len(clone.collect_events()) == 4  # the original's two pending events, and its own
    assert len(track.collect_events()) == 2  # not the clone's

    kpi = KPITrack("churn", None)
    kpi.apply_readings(
        [("r1", 9.0, to_micros(day(1, 1)), 1, "", "unhealthy", to_micros(day(1, 2)))], day(1, 2)
    )
    kpi_clone = copy.deepcopy(kpi)
    kpi_clone.apply_readings(
        [("r2", 8.0, to_micros(day(1, 2)), 2, "", "unhealthy", to_micros(day(1, 3)))], day(1, 3)
    )
    assert kpi.streak is not None
    assert kpi_clone.streak is not None
    assert kpi.streak.buckets != kpi_clone.streak.buckets
    assert kpi.readings == 1
