"""The shared exactly-once consumer and DLQ, on a real broker and a real store (SQLite, and
PostgreSQL).

A small "tally" application counts, per objective, the goal events it applied. It is fed
duplicates and poison; it must apply each event exactly once, dead-letter what it cannot
apply with a reason, and apply nothing twice when it re-reads the topic from the start.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from eventsourcing.domain import Aggregate, event

from contracts import GOAL_EVENTS, Envelope, ObjectiveArchived, dlq_topic
from services.shared.consumer import UnitOfWork
from services.shared.local_broker import ApacheKafka
from services.shared.runtime import ServiceRuntime
from services.shared.settings import Settings
from services.shared.store import ServiceApplication, store_environment
from tests.integration.test_goal_service import objective_body, published
from tests.stores import Store, both_stores
from tests.support import ServiceProcess, group_caught_up, read_topic, wait_for, wait_until

pytestmark = pytest.mark.integration


class Tally(Aggregate):
    @staticmethod
    def create_id(objective_id: str) -> uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"tally/{objective_id}")

    class Counted(Aggregate.Event):
        position: int

    @event("Started")
    def __init__(self, objective_id: str) -> None:
        self.objective_id = objective_id
        self.positions: list[int] = []

    @event(Counted)
    def count(self, position: int) -> None:
        self.positions.append(position)


class TallyApplication(ServiceApplication):
    name = "tally"


class TallyPolicy:
    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        if isinstance(event, ObjectiveArchived) and event.payload.reason == "poison":
            raise ValueError("the tally refuses poison")
        found = unit.get(Tally.create_id(event.aggregate_id))
        counter = found if isinstance(found, Tally) else Tally(event.aggregate_id)
        counter.count(event.position)
        unit.add(counter)

    def finish(self, unit: UnitOfWork) -> None:
        pass  # nothing to coalesce


def tallies(settings: Settings) -> dict[str, list[int]]:
    application = TallyApplication(env=store_environment(settings))
    try:
        counted: dict[str, list[int]] = {}
        for notification in application.recorder.select_notifications(1, 1_000_000):
            domain_event: Any = application.mapper.to_domain_event(notification)
            if isinstance(domain_event, Tally.Counted):
                counted.setdefault(str(domain_event.originator_id), []).append(
                    domain_event.position
                )
        return counted
    finally:
        application.close()


async def produce(bootstrap: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(GOAL_EVENTS, value, key=key)
    finally:
        await producer.stop()


async def consume_all(settings: Settings) -> None:
    """Run a tally consumer until its group has committed the whole topic."""
    runtime = ServiceRuntime(settings, TallyApplication(env=store_environment(settings)), None)
    runtime.consume([GOAL_EVENTS], TallyPolicy())
    await runtime.start()
    try:
        await wait_until(
            lambda: group_caught_up(
                settings.kafka_bootstrap_servers, settings.consumer_group, GOAL_EVENTS
            ),
            within=60,
            what="the consumer to commit the whole topic",
        )
    finally:
        await runtime.stop()


@both_stores
def test_each_event_applied_once_and_poison_dead_lettered(
    own_kafka: ApacheKafka, tmp_path: Path, store: Store
) -> None:
    kafka = own_kafka  # it counts everything on the topics
    goal_dir, tally_dir = tmp_path / "goal", tmp_path / "tally"
    goal_dir.mkdir()
    goal = ServiceProcess("goal", goal_dir, kafka.bootstrap_servers).start()
    try:
        ids = []
        for n in range(5):
            answer = httpx.post(f"{goal.url}/objectives", json=objective_body(f"O{n}"))
            ids.append(answer.json()["objective"]["id"])
        krs = httpx.get(f"{goal.url}/objectives/{ids[0]}").json()["key_results"]
        httpx.post(
            f"{goal.url}/objectives/{ids[0]}/key-results/{krs[1]['id']}/check-ins",
            json={"value": 7},
        ).raise_for_status()
        httpx.post(
            f"{goal.url}/objectives/{ids[1]}/archive", json={"reason": "poison"}
        ).raise_for_status()
        records = wait_for(
            lambda: [] if len(found := published(kafka, set(ids))) < 7 else found,
            what="7 goal events on the topic",
        )
    finally:
        goal.stop()

    valid = [item["record"] for item in records]
    future = json.loads(valid[0].value) | {"schema_version": 99}
    missing = json.loads(valid[2].value)
    del missing["actor"]
    poison = [
        (b"x", b"{not json"),
        (valid[0].key, json.dumps(future).encode()),
        (valid[2].key, json.dumps(missing).encode()),
    ]
    duplicates = [(record.key, record.value) for record in valid[:3]]
    asyncio.run(produce(kafka.bootstrap_servers, duplicates + poison))

    settings = store.settings(
        "alignment",
        tally_dir,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_consumer_group="tally-first",
        consumer_max_records=4,  # several batches, so batches meet duplicates
    )
    asyncio.run(consume_all(settings))

    counted = tallies(settings)
    applied = sorted(position for positions in counted.values() for position in positions)
    archived_position = next(
        json.loads(r.value)["position"] for r in valid if b"ObjectiveArchived" in r.value
    )
    every_position = sorted(json.loads(r.value)["position"] for r in valid)
    assert applied == [p for p in every_position if p != archived_position]

    dead = read_topic(kafka.bootstrap_servers, dlq_topic(GOAL_EVENTS))
    kinds = sorted(dict(r.headers)["dlq.kind"].decode() for r in dead)
    assert kinds == ["future_schema_version", "invalid_fields", "not_json", "refused"]
    reasons = {dict(r.headers)["dlq.kind"]: dict(r.headers)["dlq.reason"].decode() for r in dead}
    assert "actor" in reasons[b"invalid_fields"]
    assert "poison" in reasons[b"refused"]
    assert {r.value for r in dead} >= {b"{not json"}  # original bytes kept
    assert all(dict(r.headers)["dlq.topic"] == GOAL_EVENTS.encode() for r in dead)

    # A new consumer group re-reads everything into the same store: nothing applies twice.
    asyncio.run(consume_all(settings.model_copy(update={"kafka_consumer_group": "tally-second"})))
    assert tallies(settings) == counted
