"""A producer whose store was rebuilt, or restored from a backup, numbers its new events from
positions it used before. Consumers apply those events all the same, exactly once: each
process writes in an epoch of its own, and consumers track positions per epoch."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import GOAL_EVENTS, KPI_READINGS, METRICS_EVENTS
from tests.support import ServiceProcess, apache_kafka, read_topic, wait_caught_up, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    broker = apache_kafka(tmp_path / "kafka")
    stack: dict[str, Any] = {"broker": broker, "root": tmp_path}
    try:
        for name in ("goal", "metrics", "alignment"):
            (tmp_path / name).mkdir()
            stack[name] = ServiceProcess(name, tmp_path / name, broker.bootstrap_servers)
            stack[name].start()
        yield stack
    finally:
        # A test may replace a service (a rebuilt one): stop whatever the stack holds now.
        for service in stack.values():
            if isinstance(service, ServiceProcess):
                service.stop()
        broker.stop()


def objective(title: str, key_result: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": title,
        "owner": "ana",
        "org_unit": "sales",
        "level": "company",
        "period": "2026",
        "key_results": [key_result],
    }


def create(stack: dict[str, Any], body: dict[str, Any]) -> str:
    answer = httpx.post(f"{stack['goal'].url}/objectives", json=body, timeout=10)
    answer.raise_for_status()
    objective_id: str = answer.json()["objective"]["id"]
    return objective_id


def produce_reading(stack: dict[str, Any], value: float, n: int) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack["broker"].bootstrap_servers)
        await producer.start()
        try:
            reading = {
                "kpi": "deals",
                "value": value,
                "observed_at": f"2026-10-{n:02d}T00:00:00Z",
                "source": "crm",
                "reading_id": f"deals-{n}",
            }
            await producer.send_and_wait(KPI_READINGS, json.dumps(reading).encode(), key=b"deals")
        finally:
            await producer.stop()

    asyncio.run(send())


def shown_by_goal(stack: dict[str, Any], objective_id: str) -> float | None:
    """The key result's score as the goal service shows it (read from alignment.events)."""
    view = httpx.get(f"{stack['goal'].url}/objectives/{objective_id}", timeout=10).json()
    score = view["key_results"][0].get("score") or {}
    value: float | None = score.get("score")
    return value


def test_goal_shows_the_scores_of_a_rebuilt_alignment_service(stack: dict[str, Any]) -> None:
    httpx.put(
        f"{stack['metrics'].url}/kpis/deals",
        json={"name": "Deals", "direction": "higher_is_better", "target": 100, "interval": "P1D"},
    ).raise_for_status()
    kpi_result = {
        "title": "Close deals",
        "kind": "kpi",
        "kpi": "deals",
        "aggregation": "latest",
        "baseline": 0,
        "target": 100,
    }
    objective_id = create(stack, objective("Sell", kpi_result))
    # One reading at a time: the live alignment service publishes scores for each, so its
    # positions run ahead of those a rebuild, taking them all in one batch, will reach.
    for n, value in enumerate((10, 20, 30, 40), start=1):
        produce_reading(stack, value, n)
        wait_for(
            lambda value=value: shown_by_goal(stack, objective_id) == value / 100,  # type: ignore[misc]
            within=30,
            what=f"goal to show the score of reading {n}",
        )

    stack["alignment"].stop()
    rebuilt_dir = stack["root"] / "alignment-rebuilt"
    rebuilt_dir.mkdir()
    bootstrap = stack["broker"].bootstrap_servers
    rebuilt = ServiceProcess(
        "alignment",
        rebuilt_dir,
        bootstrap,
        extra_env={"OKR_KAFKA_CONSUMER_GROUP": "okr-alignment-rebuilt"},
    )
    stack["alignment"] = rebuilt.start()
    wait_caught_up(bootstrap, "okr-alignment-rebuilt", [GOAL_EVENTS, METRICS_EVENTS])

    produce_reading(stack, 60, 5)
    wait_for(
        lambda: shown_by_goal(stack, objective_id) == 0.6,
        within=30,
        what="goal to show the rebuilt service's new score",
    )


def published_positions(stack: dict[str, Any]) -> dict[str, int]:
    """The position of each objective's latest ``ObjectiveSet`` on goal.events, by title."""
    return {
        event["payload"]["title"]: event["position"]
        for event in (
            json.loads(record.value or b"{}")
            for record in read_topic(stack["broker"].bootstrap_servers, GOAL_EVENTS)
        )
        if event["event_type"] == "ObjectiveSet"
    }


def alignment_titles(stack: dict[str, Any]) -> set[str]:
    tree = httpx.get(f"{stack['alignment'].url}/tree", timeout=10).json()
    return {node["title"] for node in tree}


def test_alignment_applies_what_a_restored_goal_service_writes(stack: dict[str, Any]) -> None:
    milestone = {"title": "Ship", "kind": "milestone"}
    create(stack, objective("Before the backup", milestone))
    goal: ServiceProcess = stack["goal"]
    goal.stop()
    backup = stack["root"] / "goal-backup"
    shutil.copytree(goal.data_dir, backup)
    goal.start()
    create(stack, objective("Lost with the store", milestone))
    wait_for(
        lambda: alignment_titles(stack) == {"Before the backup", "Lost with the store"},
        what="alignment to hold both objectives",
    )

    goal.stop()
    shutil.rmtree(goal.data_dir)
    shutil.copytree(backup, goal.data_dir)
    goal.start()
    create(stack, objective("After the restore", milestone))

    def restored_published() -> dict[str, int] | None:
        positions = published_positions(stack)
        return positions if "After the restore" in positions else None

    position = wait_for(restored_published, what="the restored store's new objective published")
    assert position is not None
    # The restored store numbered its new event where the lost one had been, or before.
    assert position["After the restore"] <= position["Lost with the store"]
    wait_for(
        lambda: "After the restore" in alignment_titles(stack),
        what="alignment to apply the restored store's new objective",
    )
