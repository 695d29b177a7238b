"""Dead-letter queue: a message that cannot be handled goes, unchanged, to ``<topic>.dlq``
with the reason in its headers. Nothing is dropped silently and the consumer goes on."""

from __future__ import annotations

from typing import Protocol

from faststream.kafka import KafkaBroker

from contracts import dlq_topic
from services.shared.telemetry import DLQ_MESSAGES

#: Longest reason kept in a header: enough to debug, bounded so a huge error cannot bloat it.
MAX_REASON_LENGTH = 2000


class ConsumedRecord(Protocol):
    """The parts of a Kafka record the DLQ keeps (aiokafka's ``ConsumerRecord`` has them)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class DeadLetters:
    def __init__(self, broker: KafkaBroker, consumer: str) -> None:
        self._broker = broker
        self._consumer = consumer

    async def send(self, record: ConsumedRecord, reason: str, kind: str) -> None:
        """Publish the original bytes with the reason; waits for the broker's acknowledgement,
        because the consumer commits its offsets right after."""
        await self._broker.publish(
            record.value or b"",
            dlq_topic(record.topic),
            key=record.key,
            headers={
                "dlq.reason": reason[:MAX_REASON_LENGTH],
                "dlq.kind": kind,
                "dlq.topic": record.topic,
                "dlq.partition": str(record.partition),
                "dlq.offset": str(record.offset),
                "dlq.consumer": self._consumer,
            },
        )
        DLQ_MESSAGES.labels(record.topic, kind).inc()
