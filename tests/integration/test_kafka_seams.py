"""The broker behaviour ``services.shared.kafka_seams`` guards against, on Apache Kafka: a
commit without a generation, for a group the broker does not know (as after it lost its
data), is accepted and stores the committer's positions; with the seam, a member that is
rejoining its group commits nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import CommitFailedError
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.group import JoinGroupRequest

from services.shared import kafka_seams
from services.shared.local_broker import ApacheKafka
from tests.support import wait_until

pytestmark = pytest.mark.integration

READINGS = 5


@pytest.fixture
def library_commit() -> Iterator[None]:
    """aiokafka as it ships, for the length of a test."""
    before = GroupCoordinator._do_commit_offsets
    GroupCoordinator._do_commit_offsets = kafka_seams._library_commit
    try:
        yield
    finally:
        GroupCoordinator._do_commit_offsets = before


@pytest.fixture
def seam() -> Iterator[None]:
    before = GroupCoordinator._do_commit_offsets
    kafka_seams.install()
    try:
        yield
    finally:
        GroupCoordinator._do_commit_offsets = before


async def fill_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(READINGS):
            await producer.send_and_wait(topic, f"reading {n}".encode())
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in found.items()}
    finally:
        await admin.close()


async def commit_after_losing_the_group(bootstrap: str, topic: str, group: str) -> None:
    """A member reads the topic and commits, then finds its group gone: the coordinator now
    names a group the broker never saw (what a broker that lost its data answers to every
    group) and has forgotten its generation (what aiokafka does when the group changed).
    Then it commits again, as a batch handled meanwhile does."""
    await fill_topic(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{group}-before",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # No heartbeat in the test's few milliseconds: it would find the group and rejoin.
        session_timeout_ms=45_000,
        heartbeat_interval_ms=15_000,
    )
    await consumer.start()
    try:

        async def read_all() -> bool:
            await consumer.getmany(timeout_ms=200)
            position: int = await consumer.position(TopicPartition(topic, 0))
            return position >= READINGS

        await wait_until(read_all, what="the consumer to read the topic")
        await consumer.commit()
        coordinator = consumer._coordinator
        coordinator.group_id = group
        coordinator.generation = OffsetCommitRequest.DEFAULT_GENERATION_ID
        coordinator.member_id = JoinGroupRequest.UNKNOWN_MEMBER_ID
        await consumer.commit()
    finally:
        await consumer.stop()


def test_kafka_accepts_a_commit_without_a_generation_for_a_group_it_does_not_know(
    kafka: ApacheKafka, library_commit: None
) -> None:
    bootstrap = kafka.bootstrap_servers
    asyncio.run(commit_after_losing_the_group(bootstrap, "seams.accepted", "okr-lost-1"))
    assert asyncio.run(committed_offsets(bootstrap, "okr-lost-1")) == {
        TopicPartition("seams.accepted", 0): READINGS
    }


def test_a_member_rejoining_its_group_commits_nothing(kafka: ApacheKafka, seam: None) -> None:
    bootstrap = kafka.bootstrap_servers
    with pytest.raises(CommitFailedError):
        asyncio.run(commit_after_losing_the_group(bootstrap, "seams.refused", "okr-lost-2"))
    assert asyncio.run(committed_offsets(bootstrap, "okr-lost-2")) == {}
