"""Dead-letter queue: a message that cannot be handled goes, unchanged, to ``<topic>.dlq``
with the reason in its headers. Nothing is dropped silently and the consumer goes on.

A message too big to copy whole (see ``MAX_DLQ_BYTES``) is cut, and its entry says so: the
whole message stays on its own topic, at the partition and offset the headers give."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from faststream.kafka import KafkaBroker

from contracts import dlq_topic
from services.shared.telemetry import DLQ_MESSAGES

#: Longest reason kept in a header: enough to debug, bounded so a huge error cannot bloat it.
MAX_REASON_LENGTH = 2000
#: Most bytes of the original key and value one entry carries. Kafka's default limit of a
#: record (the broker's ``message.max.bytes``, the producer's ``max_request_size``) is 1 MiB,
#: and an entry is its original plus headers: a message near the limit must be cut, or its
#: entry is refused, the batch fails, and the consumer retries it forever.
MAX_DLQ_BYTES = 1_000_000
#: Most bytes of an original key kept when the entry is cut (a key is an id, never large).
MAX_DLQ_KEY_BYTES = 1024


class ConsumedRecord(Protocol):
    """The parts of a Kafka record the DLQ keeps (aiokafka's ``ConsumerRecord`` has them)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class DeadLetters:
    def __init__(self, broker: KafkaBroker, consumer: str) -> None:
        self._broker = broker
        self._consumer = consumer

    async def send(self, record: ConsumedRecord, reason: str, kind: str) -> None:
        """Publish the original bytes with the reason; waits for the broker's acknowledgement,
        because the consumer commits its offsets right after."""
        key, value = record.key, record.value or b""
        headers = {
            "dlq.reason": reason[:MAX_REASON_LENGTH],
            "dlq.kind": kind,
            "dlq.topic": record.topic,
            "dlq.partition": str(record.partition),
            "dlq.offset": str(record.offset),
            "dlq.consumer": self._consumer,
        }
        size = len(key or b"") + len(value)
        if size > MAX_DLQ_BYTES:
            key = None if key is None else key[:MAX_DLQ_KEY_BYTES]
            value = value[: MAX_DLQ_BYTES - len(key or b"")]
            headers["dlq.truncated"] = f"key and value of {size} bytes cut to {MAX_DLQ_BYTES}"
        await self._broker.publish(value, dlq_topic(record.topic), key=key, headers=headers)
        DLQ_MESSAGES.labels(record.topic, kind).inc()
