"""The outbox republishes from the store when the broker lost its data (SQLite and PostgreSQL):
all of it or one partition's tail, whether the service restarts or stays up and idle."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from contracts import GOAL_EVENTS
from services.shared.audit_api import published_head
from services.shared.broker import ensure_topics
from services.shared.local_broker import ApacheKafka
from tests.integration.test_goal_service import objective_body
from tests.stores import Store, both_stores
from tests.support import ServiceProcess, read_topic, wait_for

pytestmark = pytest.mark.integration

#: An idle relay checks the topic every second, so a test need not wait long for it.
QUICK_TAIL_CHECK = {"OKR_OUTBOX_TAIL_CHECK_SECONDS": "1"}


def positions(broker: ApacheKafka) -> list[int]:
    return sorted(
        json.loads(r.value)["position"] for r in read_topic(broker.bootstrap_servers, GOAL_EVENTS)
    )


def positions_by_partition(broker: ApacheKafka) -> dict[int, set[int]]:
    found: dict[int, set[int]] = defaultdict(set)
    for record in read_topic(broker.bootstrap_servers, GOAL_EVENTS):
        found[record.partition].add(json.loads(record.value)["position"])
    return found


def set_objectives(goal: ServiceProcess, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        httpx.post(f"{goal.url}/objectives", json=objective_body(f"O{n}")).raise_for_status()


def fill_every_partition(
    goal: ServiceProcess, broker: ApacheKafka, at_least: int
) -> dict[int, set[int]]:
    """Set objectives until every partition of the topic holds ``at_least`` of their events
    (aggregate ids are random, and so is how their events spread over the partitions)."""
    published = 0
    while True:
        held = positions_by_partition(broker)
        if len(held) == 3 and all(len(positions) >= at_least for positions in held.values()):
            return held
        assert published < 20 * at_least, f"{published} events did not fill every partition"
        set_objectives(goal, 3, first=published)
        published += 3
        wait_published(broker, published)


def wait_published(broker: ApacheKafka, count: int) -> None:
    wait_for(lambda: len(positions(broker)) == count, what=f"{count} events on the topic")


def wait_recorded(broker: ApacheKafka, position: int) -> None:
    """Until the relay has recorded ``position`` as published (it announces the chain head
    there just before): resuming from an earlier record, it would publish the events after
    it again anyway, without having to find what the broker lost."""

    def announced() -> bool:
        options = {"bootstrap_servers": broker.bootstrap_servers}
        head = asyncio.run(published_head(options, "goal"))
        return head is not None and head[0] >= position

    wait_for(announced, what=f"the relay to record position {position}")


def recreate_topics(broker: ApacheKafka) -> None:
    asyncio.run(ensure_topics({"bootstrap_servers": broker.bootstrap_servers}))


@both_stores
def test_events_are_republished_after_the_broker_lost_its_data(
    own_kafka: ApacheKafka, data_dir: Path, store: Store
) -> None:
    broker = own_kafka
    goal = ServiceProcess("goal", data_dir, broker.bootstrap_servers, extra_env=store.env("goal"))
    try:
        goal.start()
        set_objectives(goal, 3)
        wait_for(lambda: positions(broker) == [1, 2, 3], what="3 events on the topic")
        goal.stop()

        broker.wipe()
        broker.start()
        recreate_topics(broker)
        assert positions(broker) == []

        goal.start()
        wait_for(lambda: positions(broker) == [1, 2, 3], what="the events republished")
    finally:
        goal.stop()


@both_stores
def test_an_idle_relay_republishes_what_a_wiped_broker_lost(
    own_kafka: ApacheKafka, data_dir: Path, store: Store
) -> None:
    """No write follows the wipe: the relay has nothing to send that would reveal the loss,
    and finds it by checking the topic while idle."""
    broker = own_kafka
    goal = ServiceProcess(
        "goal",
        data_dir,
        broker.bootstrap_servers,
        extra_env=store.env("goal") | QUICK_TAIL_CHECK,
    )
    try:
        goal.start()
        set_objectives(goal, 3)
        wait_for(lambda: positions(broker) == [1, 2, 3], what="3 events on the topic")
        wait_recorded(broker, 3)

        broker.wipe()
        broker.start()
        recreate_topics(broker)

        wait_for(
            lambda: positions(broker) == [1, 2, 3],
            within=60,
            what="the idle relay to republish the events",
        )
    finally:
        goal.stop()


@pytest.mark.parametrize("restart", [True, False], ids=["restarted service", "idle service"])
def test_a_partition_that_lost_its_tail_gets_it_back(
    own_kafka: ApacheKafka, data_dir: Path, restart: bool
) -> None:
    """One partition's log is gone while the others are whole, one of them holding the
    latest event: only a check partition by partition sees what is missing."""
    broker = own_kafka
    goal = ServiceProcess("goal", data_dir, broker.bootstrap_servers, extra_env=QUICK_TAIL_CHECK)
    try:
        goal.start()
        before, damaged = published_in_every_partition(goal, broker)

        if restart:
            goal.stop()
        broker.stop()
        # Kafka recreates, empty, the log of a partition assigned to it that it cannot find.
        shutil.rmtree(broker.kraft_dir / f"{GOAL_EVENTS}-{damaged}")
        broker.start()
        if restart:
            assert damaged not in positions_by_partition(broker), "the partition's log is gone"
            goal.start()

        wait_restored(broker, before, damaged)
    finally:
        goal.stop()


def test_an_idle_relay_refills_a_partition_emptied_while_the_broker_stays_up(
    own_kafka: ApacheKafka, data_dir: Path
) -> None:
    """No failure either makes the relay start over: its check while idle alone finds the
    partition whose records were deleted."""
    broker = own_kafka
    goal = ServiceProcess("goal", data_dir, broker.bootstrap_servers, extra_env=QUICK_TAIL_CHECK)
    try:
        goal.start()
        before, damaged = published_in_every_partition(goal, broker)

        asyncio.run(delete_records(broker, TopicPartition(GOAL_EVENTS, damaged)))

        wait_restored(broker, before, damaged)
    finally:
        goal.stop()


def published_in_every_partition(
    goal: ServiceProcess, broker: ApacheKafka
) -> tuple[dict[int, set[int]], int]:
    """The positions each partition holds once every partition holds several, all recorded
    as published; and a partition to damage: not the one holding the latest event, so that
    another partition stays ahead of it."""
    before = fill_every_partition(goal, broker, at_least=3)
    latest = max(max(held) for held in before.values())
    wait_recorded(broker, latest)
    return before, next(p for p, held in sorted(before.items()) if latest not in held)


async def delete_records(broker: ApacheKafka, partition: TopicPartition) -> None:
    """Delete every record of ``partition``: it stays, with nothing in it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        # Kafka reads the offset -1 as the partition's high watermark: all of it.
        await admin.delete_records({partition: RecordsToDelete(before_offset=-1)})
    finally:
        await admin.close()


def wait_restored(broker: ApacheKafka, before: dict[int, set[int]], damaged: int) -> None:
    """Until every partition holds at least the positions it held ``before`` again."""

    def restored() -> bool:
        try:
            now = positions_by_partition(broker)
        except TimeoutError:  # a partition whose records were deleted has none to read yet
            return False
        return all(held <= now.get(p, set()) for p, held in before.items())

    wait_for(restored, within=60, what=f"partition {damaged} to get its events back")


def test_a_broker_that_lost_its_data_and_took_new_messages_gets_the_old_ones_back(
    own_kafka: ApacheKafka, data_dir: Path
) -> None:
    """The broker lost its data, then took the latest messages again before the relay died
    (it forgot the offsets that would have shown the loss): every tail looks whole, and only
    the partitions' beginnings show what is missing."""
    broker = own_kafka
    goal = ServiceProcess("goal", data_dir, broker.bootstrap_servers)
    try:
        goal.start()
        before = fill_every_partition(goal, broker, at_least=2)
        wait_recorded(broker, max(max(held) for held in before.values()))
        tails = {}
        for record in read_topic(broker.bootstrap_servers, GOAL_EVENTS):
            tails[record.partition] = record  # the last one of each partition wins
        goal.kill()

        broker.wipe()
        broker.start()
        recreate_topics(broker)
        asyncio.run(produce_again(broker, list(tails.values())))
        assert {p: max(held) for p, held in positions_by_partition(broker).items()} == {
            p: max(held) for p, held in before.items()
        }, "every tail looks whole"

        goal.start()
        wait_for(
            lambda: all(before[p] <= held for p, held in positions_by_partition(broker).items()),
            within=60,
            what="the lost beginnings republished",
        )
    finally:
        goal.stop()


async def produce_again(broker: ApacheKafka, records: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                GOAL_EVENTS,
                record.value,
                key=record.key,
                partition=record.partition,
                headers=list(record.headers),
            )
    finally:
        await producer.stop()
