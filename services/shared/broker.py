"""The topics the system uses, created on any Kafka (here only: their partitions and configs
are defined once); the one reader of their records, whole or each partition's tail, that
tools, the outbox relay and the audit use alike; and whether a broker answers. The brokers
this machine runs itself are in ``local_broker``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from contracts import ALL_TOPICS, KPI_READINGS, dlq_topic
from contracts.topics import AUDIT_HEADS

log = logging.getLogger(__name__)

#: Topic -> partitions. Event topics are keyed by aggregate id, so partitions only bound
#: the parallelism of consumers; readings get more because they are the volume.
TOPIC_PARTITIONS = {topic: (6 if topic == KPI_READINGS else 3) for topic in ALL_TOPICS}
#: Event topics are the system's history: kept forever (Kafka's -1).
FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


async def broker_answers(bootstrap_servers: str, **options: Any) -> bool:
    """Whether a Kafka broker answers a metadata request (quietly: no answer is an answer)."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=2000, **options
    )
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (TimeoutError, KafkaConnectionError, OSError):
        return False
    finally:
        await admin.close()
        quiet.setLevel(level)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (none when it does not exist), from a fresh metadata answer.

    A consumer knows the partitions of the topics it tracks only: Kafka answers a metadata
    request for the topics it names (``consumer.topics()`` fetches all of them, into a copy
    the consumer does not keep), so the topic is tracked first.
    """
    await consumer._client.add_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


#: What a read of a few records per partition fetches, and takes, at a time (see
#: ``read_partitions``).
FEW_RECORDS_FETCH_BYTES = 16 * 1024
FEW_RECORDS_AT_ONCE = 20


async def read_partitions(
    client_options: dict[str, Any],
    topic: str,
    last: int | None = None,
    until: Callable[[ConsumerRecord], bool] | None = None,
) -> dict[int, list[ConsumerRecord]]:
    """Each partition of ``topic`` with its records up to its current end, in order: all of
    them, the ``last`` few only, or those up to the first that ``until`` holds for. No
    partitions when the topic is missing; no consumer group, so nothing is committed."""
    few = last is not None or until is not None
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        # Reading a few records, fetch little: the broker still answers with a whole record
        # batch, however large.
        **({"max_partition_fetch_bytes": FEW_RECORDS_FETCH_BYTES} if few else {}),
        **client_options,
    )
    try:  # stopped even when it cannot start: an idle relay asks while the broker is away
        await consumer.start()
        partitions = await topic_partitions(consumer, topic)
        if not partitions:
            return {}
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[int, list[ConsumerRecord]] = {tp.partition: [] for tp in partitions}
        pending = {tp for tp in partitions if ends[tp] > starts[tp]}
        for tp in pending:
            consumer.seek(tp, starts[tp] if last is None else max(starts[tp], ends[tp] - last))
        while pending:
            # Records are unpacked as they are taken, on the event loop that the service's
            # consumers and relays share: taking a whole fetch when a record or two will do
            # stalled them at each of the outbox's periodic checks (docs/benchmarks.md).
            batches = await consumer.getmany(
                *pending,
                timeout_ms=5000,
                max_records=(last or FEW_RECORDS_AT_ONCE) if few else None,
            )
            if not batches:
                raise TimeoutError(f"stalled reading {topic}")
            for tp, batch in batches.items():
                met = next((i for i, r in enumerate(batch) if until(r)), None) if until else None
                records[tp.partition].extend(batch if met is None else batch[: met + 1])
                # The position, not the last offset read: a compacted topic has gaps.
                if met is not None or await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return records
    finally:
        await consumer.stop()


async def read_topic(client_options: dict[str, Any], topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its current end, partition by partition, in order."""
    partitions = await read_partitions(client_options, topic)
    return [record for partition in sorted(partitions) for record in partitions[partition]]


async def ensure_topics(client_options: dict[str, Any], within: float = 30.0) -> list[str]:
    """Create every topic of the system that does not exist yet; returns those created.

    A broker that has just started may answer one request and refuse the next for a moment
    (its node not ready yet); what Kafka calls retriable is tried again for ``within``
    seconds."""
    deadline = time.monotonic() + within
    created: list[str] = []
    while True:
        try:
            await _create_missing_topics(client_options, created)
            return created
        except KafkaError as error:
            if not error.retriable or time.monotonic() > deadline:
                raise
            log.info("creating the topics failed (%r); trying again", error)
        await asyncio.sleep(0.5)  # a back-off, not a synchronisation


async def _create_missing_topics(client_options: dict[str, Any], created: list[str]) -> None:
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions, 1, topic_configs=FOREVER)
            for topic, partitions in TOPIC_PARTITIONS.items()
            for name in (topic, dlq_topic(topic))
            if name not in existing
        ]
        if AUDIT_HEADS not in existing:  # the latest head per service is all that matters
            wanted.append(NewTopic(AUDIT_HEADS, 1, 1, topic_configs={"cleanup.policy": "compact"}))
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(wanted)
        created += [topic.name for topic in wanted]
    finally:
        await admin.close()


def main() -> None:
    """``python -m services.shared.broker``: create the topics on ``KAFKA_BOOTSTRAP_SERVERS``
    (the topic-creation step of docker-compose uses it, so topics are defined once, here)."""
    from services.shared.settings import Settings

    created = asyncio.run(ensure_topics(Settings().kafka_client_options()))
    print(f"created: {', '.join(created) or 'none, all exist'}")


if __name__ == "__main__":
    main()
