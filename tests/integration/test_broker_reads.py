"""``broker.read_partitions`` on Apache Kafka: a read of a few records takes only those off
the fetched batches, so the outbox's periodic checks do not hold up the event loop their
service's consumers share (each record taken is unpacked there)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.fetcher import PartitionRecords

from services.shared import broker
from services.shared.local_broker import ApacheKafka

pytestmark = pytest.mark.integration

TOPIC = "reads.batched"
PARTITIONS = 2
PER_PARTITION = 3000


async def fill(bootstrap: str) -> None:
    """Each partition gets its records in a few large batches, as a relay publishing a backlog
    leaves them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=200, max_batch_size=1024 * 1024
    )
    await producer.start()
    try:
        sent = [
            await producer.send(TOPIC, f"{partition}-{n}".encode(), partition=partition)
            for partition in range(PARTITIONS)
            for n in range(PER_PARTITION)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def bootstrap(kafka: ApacheKafka) -> str:
    asyncio.run(fill(kafka.bootstrap_servers))
    return kafka.bootstrap_servers


@pytest.fixture
def unpacked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records the consumer unpacked into ``ConsumerRecord``s."""
    taken = [0]
    library = PartitionRecords._consumer_record

    def counted(self: PartitionRecords, tp: Any, record: Any) -> Any:
        taken[0] += 1
        return library(self, tp, record)

    monkeypatch.setattr(PartitionRecords, "_consumer_record", counted)
    return taken


def test_reading_up_to_a_record_takes_few_off_the_batches(
    bootstrap: str, unpacked: list[int]
) -> None:
    found = asyncio.run(
        broker.read_partitions({"bootstrap_servers": bootstrap}, TOPIC, until=lambda _: True)
    )
    assert {p: [r.value for r in records] for p, records in found.items()} == {
        p: [f"{p}-0".encode()] for p in range(PARTITIONS)
    }
    assert unpacked[0] <= PARTITIONS * broker.FEW_RECORDS_AT_ONCE


def test_reading_the_last_record_takes_few_off_the_batches(
    bootstrap: str, unpacked: list[int]
) -> None:
    found = asyncio.run(broker.read_partitions({"bootstrap_servers": bootstrap}, TOPIC, last=1))
    assert {p: [r.value for r in records] for p, records in found.items()} == {
        p: [f"{p}-{PER_PARTITION - 1}".encode()] for p in range(PARTITIONS)
    }
    assert unpacked[0] <= PARTITIONS * broker.FEW_RECORDS_AT_ONCE


def test_reading_a_whole_topic_takes_every_record_in_order(bootstrap: str) -> None:
    found = asyncio.run(broker.read_partitions({"bootstrap_servers": bootstrap}, TOPIC))
    assert {p: [r.value for r in records] for p, records in found.items()} == {
        p: [f"{p}-{n}".encode() for n in range(PER_PARTITION)] for p in range(PARTITIONS)
    }
