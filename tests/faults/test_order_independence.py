"""What the fault suite found in the alignment service, where a rebuild disagreed with the
live service after kills:

- an archived objective's scores depended on the order in which its archival (on
  ``goal.events``) and its KPI's readings (on ``metrics.events``) arrived, and on how they fell
  into batches. Now it is scored over the readings recorded before its archival, whatever the
  order of arrival;
- a roll-up's mean depended, in its last bits, on the order its children were learnt of. Now
  the sums are exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from hypothesis import given
from hypothesis import strategies as st

from contracts import (
    Envelope,
    KPIDefined,
    KPIRecorded,
    ObjectiveArchived,
    ObjectiveSet,
    stable_event_id,
)
from services.alignment.application import AlignmentApplication
from services.alignment.policy import AlignmentPolicy
from services.alignment.scoring import weighted_mean
from services.shared.consumer import UnitOfWork
from services.shared.settings import Settings
from services.shared.store import store_environment

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ARCHIVED = NOW - timedelta(hours=1)


def envelope(
    producer: str, position: int, aggregate_id: str, version: int, at: datetime
) -> dict[str, Any]:
    return {
        "event_id": stable_event_id(producer, aggregate_id, version),
        "producer": producer,
        "position": position,
        "aggregate_id": aggregate_id,
        "aggregate_version": version,
        "occurred_at": at,
        "actor": producer,
    }


def reading(position: int, value: float, recorded: datetime) -> KPIRecorded:
    payload = {
        "kpi": "signups",
        "value": value,
        "observed_at": datetime(2026, 3, position, tzinfo=UTC),
        "source": "crm",
        "reading_id": f"signups-{position}",
        "health": "healthy",
    }
    fields = envelope("metrics", position, "signups", position, recorded)
    return KPIRecorded.model_validate({**fields, "payload": payload})


KPI = KPIDefined.model_validate(
    {
        **envelope("metrics", 1, "signups", 1, NOW - timedelta(days=2)),
        "payload": {
            "key": "signups",
            "name": "Signups",
            "direction": "higher_is_better",
            "target": 10.0,
            "interval": "P1D",
            "interval_seconds": 86400.0,
        },
    }
)
OBJECTIVE = ObjectiveSet.model_validate(
    {
        **envelope("goal", 1, "obj", 1, NOW - timedelta(days=2)),
        "payload": {
            "id": "obj",
            "title": "Grow",
            "owner": "ana",
            "org_unit": "sales",
            "level": "company",
            "period": {
                "label": "2026",
                "cadence": "annual",
                "start": "2026-01-01",
                "end": "2026-12-31",
            },
            "key_results": [
                {
                    "id": "kr",
                    "title": "Sum of signups",
                    "kind": "kpi",
                    "kpi": "signups",
                    "aggregation": "sum",
                    "baseline": 0.0,
                    "target": 10.0,
                }
            ],
        },
    }
)
BEFORE = reading(2, 3.0, ARCHIVED - timedelta(minutes=5))  # recorded before the archival
AFTER = reading(3, 4.0, ARCHIVED + timedelta(minutes=5))  # recorded after it
ARCHIVAL = ObjectiveArchived.model_validate(
    {**envelope("goal", 2, "obj", 2, ARCHIVED), "payload": {"objective_id": "obj"}}
)


def scored(data_dir: Path, batches: Sequence[Sequence[Envelope]]) -> dict[str, Any]:
    """The archived objective's value and scores after applying ``batches`` in order."""
    application = AlignmentApplication(
        env=store_environment(Settings(service="alignment", data_dir=data_dir))
    )
    policy = AlignmentPolicy(application)
    policy.clock = lambda: NOW
    try:
        for batch in batches:
            unit = UnitOfWork(application)
            for event in batch:
                policy.apply(event, unit)
            policy.finish(unit)
            application.record_batch(
                unit.processing_event(), [Tracking(e.origin, e.position) for e in batch]
            )
        track = application.track("obj")
        assert track.evaluation is not None
        return {
            "value": track.evaluations["kr"]["value"],
            "key_result_score": track.evaluations["kr"]["score"],
            "score": track.evaluation["score"],
            "final": track.evaluation["final"],
        }
    finally:
        application.close()


@pytest.mark.parametrize(
    "arrival",
    [
        pytest.param([[KPI, OBJECTIVE], [BEFORE], [ARCHIVAL], [AFTER]], id="in-time-order"),
        pytest.param([[KPI, OBJECTIVE], [BEFORE, AFTER], [ARCHIVAL]], id="readings-first"),
        pytest.param([[KPI, OBJECTIVE], [ARCHIVAL], [AFTER, BEFORE]], id="archival-first"),
        pytest.param([[KPI, OBJECTIVE, ARCHIVAL], [BEFORE], [AFTER]], id="defined-archived"),
        pytest.param([[KPI, OBJECTIVE, AFTER, BEFORE, ARCHIVAL]], id="one-batch"),
    ],
)
def test_an_archived_objective_scores_the_same_whatever_the_arrival_order(
    tmp_path: Path, arrival: list[list[Envelope]]
) -> None:
    # Only the reading recorded before the archival counts: 3 of 10.
    assert scored(tmp_path, arrival) == {
        "value": 3.0,
        "key_result_score": 0.3,
        "score": 0.3,
        "final": False,
    }


@given(
    st.lists(
        st.tuples(st.floats(0, 1, allow_nan=False), st.floats(0.1, 1000, allow_nan=False)),
        min_size=1,
        max_size=30,
    ),
    st.randoms(),
)
def test_a_weighted_mean_does_not_depend_on_the_order_of_its_terms(
    pairs: list[tuple[float, float]], order: random.Random
) -> None:
    shuffled = list(pairs)
    order.shuffle(shuffled)
    assert weighted_mean(shuffled) == weighted_mean(pairs)
