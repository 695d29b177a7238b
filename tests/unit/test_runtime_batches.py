"""FastStream's message of a polled batch is made from its first record (its own parser makes a
dict of every record's headers, which the handlers never read), and still holds the whole
batch for what FastStream does with it: the rewind of each partition when a batch fails, and
its consumed-message metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.parser import AioKafkaBatchParser
from faststream.kafka.prometheus.provider import BatchKafkaMetricsSettingsProvider
from faststream.message import StreamMessage

from services.shared.runtime import _batch_parsed_by_its_first_record


def record(partition: int, offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="metrics.events",
        partition=partition,
        offset=offset,
        timestamp=1_700_000_000_000 + offset,
        timestamp_type=0,
        key=b"revenue",
        value=value,
        checksum=None,
        serialized_key_size=7,
        serialized_value_size=len(value),
        headers=[("event_type", b"KPIRecorded"), ("producer", b"metrics")],
    )


BATCH = (
    record(0, 10, b'{"reading": 1}'),
    record(1, 40, b'{"reading": 2}'),
    record(0, 11, b'{"reading": 3}'),
    record(1, 41, b""),
)


class Consumer:
    """The consumer calls FastStream's acknowledgement makes."""

    def __init__(self) -> None:
        self.seeks: dict[TopicPartition, int] = {}
        self.commits = 0

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks[partition] = offset

    async def commit(self) -> None:
        self.commits += 1


def parsed(consumer: Consumer) -> tuple[StreamMessage[Any], list[int]]:
    """The message of ``BATCH``, and how many records FastStream's own parser was given."""
    parser = AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None)
    parser._setup(consumer)  # what FastStream does when the subscriber starts
    given: list[int] = []

    async def parse_batch(records: tuple[Any, ...]) -> StreamMessage[Any]:
        given.append(len(records))
        return await parser.parse_batch(records)

    message = asyncio.run(_batch_parsed_by_its_first_record(BATCH, parse_batch))
    return message, given


def test_the_headers_of_only_the_first_record_are_parsed() -> None:
    message, given = parsed(Consumer())

    assert given == [1]
    assert message.headers == {"event_type": "KPIRecorded", "producer": "metrics"}


def test_the_message_holds_the_whole_batch() -> None:
    consumer = Consumer()
    message, _ = parsed(consumer)

    assert message.raw_message == BATCH
    assert message.body == [b'{"reading": 1}', b'{"reading": 2}', b'{"reading": 3}', b""]
    assert isinstance(message, KafkaAckableMessage)
    assert message.consumer is consumer


def test_a_failed_batch_rewinds_each_partition_to_its_earliest_record() -> None:
    consumer = Consumer()
    message, _ = parsed(consumer)

    asyncio.run(message.nack())

    assert consumer.seeks == {
        TopicPartition("metrics.events", 0): 10,
        TopicPartition("metrics.events", 1): 40,
    }


def test_a_handled_batch_is_committed() -> None:
    consumer = Consumer()
    message, _ = parsed(consumer)

    asyncio.run(message.ack())

    assert consumer.commits == 1


def test_faststream_counts_every_record_of_the_batch() -> None:
    message, _ = parsed(Consumer())

    attributes = BatchKafkaMetricsSettingsProvider().get_consume_attrs_from_message(message)

    assert attributes["messages_count"] == 4
    assert attributes["message_size"] == sum(len(r.value or b"") for r in BATCH)
