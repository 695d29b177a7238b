"""The outbox republishes from the store when the broker lost its data (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from contracts import GOAL_EVENTS
from services.shared.broker import ensure_topics
from services.shared.local_broker import ApacheKafka
from tests.integration.test_goal_service import objective_body
from tests.stores import Store, both_stores
from tests.support import ServiceProcess, read_topic, wait_for

pytestmark = pytest.mark.integration


def positions(broker: ApacheKafka) -> list[int]:
    return sorted(
        json.loads(r.value)["position"] for r in read_topic(broker.bootstrap_servers, GOAL_EVENTS)
    )


@both_stores
def test_events_are_republished_after_the_broker_lost_its_data(
    own_kafka: ApacheKafka, data_dir: Path, store: Store
) -> None:
    broker = own_kafka
    goal = ServiceProcess("goal", data_dir, broker.bootstrap_servers, extra_env=store.env("goal"))
    try:
        goal.start()
        for n in range(3):
            httpx.post(f"{goal.url}/objectives", json=objective_body(f"O{n}")).raise_for_status()
        wait_for(lambda: positions(broker) == [1, 2, 3], what="3 events on the topic")
        goal.stop()

        broker.wipe()
        broker.start()
        asyncio.run(ensure_topics({"bootstrap_servers": broker.bootstrap_servers}))
        assert positions(broker) == []

        goal.start()
        wait_for(lambda: positions(broker) == [1, 2, 3], what="the events republished")
    finally:
        goal.stop()
