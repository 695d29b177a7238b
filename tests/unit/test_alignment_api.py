"""The alignment API's views: what ``GET /tree`` carries of each key result, now and as of an
earlier instant."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from services.alignment import api
from services.alignment.domain import ObjectiveTrack
from tests.unit.test_alignment_application import (
    Alignment,
    Feed,
    metric_kr,
    objective,
    open_service,
)

LOYALTY = objective(
    "obj-loyalty",
    "Customers who stay",
    [metric_kr("kr-nps", "NPS to 40", 20, 40), metric_kr("kr-churn", "Churn to 5", 10, 5)],
)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Alignment]:
    opened = open_service(tmp_path)
    yield opened
    opened.app.close()


def tree_confidences(service: Alignment, as_of: datetime | None) -> dict[str, Any]:
    nodes = asyncio.run(api.tree(service.app, period=None, org_unit=None, as_of=as_of))
    return {
        kr["id"]: kr["confidence"]
        for node in nodes
        for kr in node.model_dump(mode="json")["key_results"]
    }


def test_the_tree_carries_each_key_results_latest_confidence_now_and_as_of(
    service: Alignment,
) -> None:
    """The console renders the tree's confidences from ``/tree`` alone, rather than asking
    the goal service for every objective."""
    feed = Feed()
    first = service.batch(
        feed.objective(LOYALTY), feed.check_in("obj-loyalty", "kr-nps", value=30, confidence=4)
    )
    (checked_in,) = (
        r.domain_event for r in first if isinstance(r.domain_event, ObjectiveTrack.CheckedIn)
    )
    then = checked_in.timestamp
    service.batch(feed.check_in("obj-loyalty", "kr-nps", confidence=8))
    # A check-in without a confidence keeps the one stated before.
    service.batch(feed.check_in("obj-loyalty", "kr-nps", value=33))

    assert tree_confidences(service, None) == {"kr-nps": 8, "kr-churn": None}
    assert tree_confidences(service, then) == {"kr-nps": 4, "kr-churn": None}
