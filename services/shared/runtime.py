"""One service process: its store, its Kafka broker connection, its outbox relay and its
exactly-once consumers, started and stopped together (by the HTTP app's lifespan); and the
dependencies by which the app's routes reach it and its application."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Annotated, Any, TypeVar

from aiokafka import TopicPartition
from fastapi import Depends, Request
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from prometheus_client import REGISTRY

from contracts import Envelope
from services.shared import kafka_seams, long_poll
from services.shared.consumer import BatchHandler, Policy, TrackedConsumer
from services.shared.dlq import DeadLetters
from services.shared.integration_events import Translator
from services.shared.outbox import OutboxRelay
from services.shared.settings import Settings
from services.shared.store import ServiceApplication
from services.shared.telemetry import (
    BATCH_SECONDS,
    BATCH_SIZE,
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    declare_consumed,
)

log = logging.getLogger(__name__)


def report_lag(consumer: Any, records: Sequence[Any]) -> None:
    """Consumer lag after a batch: messages behind the partition's high-water mark, and the
    age of the newest record handled."""
    newest: dict[tuple[str, int], Any] = {}
    for record in records:
        newest[(record.topic, record.partition)] = record
    for (topic, partition), record in newest.items():
        highwater = consumer.highwater(TopicPartition(topic, partition))
        if highwater is not None:
            CONSUMER_LAG.labels(topic, str(partition)).set(max(highwater - record.offset - 1, 0))
        CONSUMER_LAG_SECONDS.labels(topic).set(max(time.time() - record.timestamp / 1000, 0.0))


BatchParser = Callable[[tuple[Any, ...]], Awaitable[StreamMessage[Any]]]


async def _batch_parsed_by_its_first_record(
    records: tuple[Any, ...], parse_batch: BatchParser
) -> StreamMessage[Any]:
    """FastStream's message of a polled batch, its own parser run on the first record only.

    That parser makes a dict of every record's headers, which our handlers never read (they
    take the raw records and their ``event_type`` header); for a consumer skipping most of a
    topic it was a fifth of its CPU. The message still holds the whole batch, as FastStream's
    acknowledgement (the rewind of each partition) and its metrics read it."""
    message = await parse_batch(records[:1])
    message.raw_message = records
    message.body = [record.value or b"" for record in records]
    return message


async def _raw_body(message: StreamMessage[Any]) -> Any:
    """Hand the handler the bytes as they came: decoding and validation are ours, so that a
    malformed message reaches the DLQ instead of failing inside FastStream."""
    return message.body


#: How long a consumer waits before polling again after a small batch, on a broker that
#: answers a fetch at once whatever bytes it asked for (noida-db): a trickle of tiny batches
#: costs more CPU than the records in them, and a long wait costs latency (the measurements
#: behind the value: docs/benchmarks.md, "Why these settings"). Apache Kafka gathers the
#: batch itself (``consumer_fetch_min_bytes``).
CONSUMER_LINGER_SECONDS = 0.015


#: Allocations (net of frees) between two young collections of the cyclic garbage collector.
#: A young collection walks every object allocated since the one before that is still alive:
#: while a batch is handled, that is most of the batch (about nine objects a consumed event,
#: kept until the batch is stored), so the rarer they are, the fewer batches they walk.
#: Cyclic garbage is still collected every so many allocations; other garbage goes at once.
YOUNG_COLLECTION_ALLOCATIONS = 500_000


def settle_heap() -> None:
    """Tune the cyclic garbage collector for a service whose state is loaded: that state lives
    as long as the process, so it is frozen out of the collector's generations, and young
    collections are made rarer (``YOUNG_COLLECTION_ALLOCATIONS``; the older generations keep
    their default ratios to it). Otherwise the collector walks the state and the batch at
    hand again and again while batches allocate, a large share of a batch's time
    (``tests.bench.inprocess`` shows it)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, 10, 10)


async def _commit(message: KafkaMessage) -> None:
    """Commit a handled batch's offsets, in an empty context. The commit's request timeout is
    a timer, and asyncio keeps a cancelled timer, with the context it was made in, until it
    would have fired: made in FastStream's context, which holds the whole batch, it kept every
    batch of the last request timeout in memory. A failed commit is no loss: the batch comes
    again, and tracking skips what it already applied."""
    try:
        await asyncio.get_running_loop().create_task(message.ack(), context=contextvars.Context())
    except Exception:
        log.warning("committing the offsets of a handled batch failed", exc_info=True)


class ServiceRuntime:
    def __init__(
        self,
        settings: Settings,
        application: ServiceApplication,
        publishes: tuple[str, Translator] | None,
    ) -> None:
        """``publishes`` is the topic the outbox relay feeds and how each stored event becomes
        an integration event; None for a process that only consumes."""
        self.settings = settings
        self.application = application
        kafka_seams.install()
        if settings.kafka_empty_fetch_pause:
            # Before FastStream and the relay make their consumers.
            long_poll.install(settings.kafka_empty_fetch_pause)
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            client_id=f"okr-{settings.service}",
            enable_idempotence=settings.kafka_idempotence,
            acks="all",
            compression_type=settings.kafka_compression_type(),
            security=settings.kafka_security(),
            middlewares=[
                KafkaPrometheusMiddleware(
                    registry=REGISTRY,
                    app_name=f"okr-{settings.service}",
                    metrics_prefix="okr_faststream",
                )
            ],
            logger=log,
        )
        self.relay = None
        if publishes is not None:
            topic, translate = publishes
            self.relay = OutboxRelay(
                application,
                topic,
                translate,
                settings.kafka_client_options(),
                batch_size=settings.outbox_batch_size,
                poll_seconds=settings.outbox_poll_seconds,
                tail_check_seconds=settings.outbox_tail_check_seconds,
                idempotence=settings.kafka_idempotence,
                compression=settings.kafka_compression_type(),
            )
        self.dead_letters = DeadLetters(self.broker, settings.consumer_group)
        self._tasks: list[asyncio.Task[None]] = []
        self._periodic: list[tuple[Callable[[], Coroutine[Any, Any, None]], str]] = []
        #: Consecutive failed batches per topic, for the back-off.
        self._failures: dict[str, int] = {}

    def consume(
        self,
        topics: Sequence[str],
        policy: Policy,
        event_types: Collection[type[Envelope]] | None = None,
        fetch_wait_seconds: float | None = None,
    ) -> TrackedConsumer:
        """Subscribe ``policy`` to the integration events on ``topics``, exactly once (to
        those of ``event_types`` only, if given: see ``TrackedConsumer``)."""
        consumer = TrackedConsumer(self.application, policy, self.dead_letters, event_types)
        self.subscribe(topics, consumer.handle_batch, fetch_wait_seconds)
        return consumer

    def subscribe(
        self,
        topics: Sequence[str],
        handle_batch: BatchHandler,
        fetch_wait_seconds: float | None = None,
    ) -> None:
        """Hand ``handle_batch`` each polled batch of raw records from ``topics`` (one consumer
        for all of them: one group member, one fetch loop); call before ``start``. The broker
        gathers each batch for up to ``fetch_wait_seconds`` (by default the settings'
        ``consumer_fetch_wait_seconds``).

        Offsets are committed only after the handler returns, and rewound when it raises:
        at-least-once delivery, which the handlers make exactly-once with tracking records or
        idempotency keys stored with their effects.
        """
        failures = self._failures
        # Only where the broker does not hold fetches: the same broker the long polling is for.
        linger_below = (
            max(self.settings.consumer_max_records // 20, 1)
            if self.settings.kafka_empty_fetch_pause
            else 0
        )
        for name in topics:
            declare_consumed(name)
        topic = ",".join(topics)  # names the subscription in logs and metric labels

        @self.broker.subscriber(
            *topics,
            group_id=self.settings.consumer_group,
            group_instance_id=self.settings.group_instance_id(topics),
            batch=True,
            batch_timeout_ms=kafka_seams.BATCH_POLL_MS,
            max_records=self.settings.consumer_max_records,
            # Enough prefetched per partition to fill a batch (events are about 0.5 kB, and
            # tens of bytes compressed: the limit counts them as sent).
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_min_bytes=self.settings.consumer_fetch_min_bytes,
            fetch_max_wait_ms=round(
                (fetch_wait_seconds or self.settings.consumer_fetch_wait_seconds) * 1000
            ),
            auto_offset_reset="earliest",
            # Records of aborted transactions (a producer's failed batch) never happened.
            isolation_level="read_committed",
            # Acknowledged here, in handle: committed after it returns, rewound when it
            # raises, as NACK_ON_ERROR would, but the commit outside the batch's context.
            ack_policy=AckPolicy.MANUAL,
            parser=_batch_parsed_by_its_first_record,
            decoder=_raw_body,
        )
        async def handle(body: Any, message: KafkaMessage) -> None:
            records = message.raw_message
            try:
                with BATCH_SECONDS.labels(topic).time():
                    await handle_batch(records)
            except Exception:
                # Back off before the batch is redelivered: a store outage is no busy loop.
                failures[topic] = failures.get(topic, 0) + 1
                log.exception("batch from %s failed; it will be redelivered", topic)
                await asyncio.sleep(min(0.2 * 2 ** failures[topic], 10.0))
                await message.nack()
                raise
            failures[topic] = 0
            await _commit(message)
            BATCH_SIZE.labels(topic).observe(len(records))
            report_lag(message.consumer, records)
            if len(records) < linger_below:
                # A trickle: let the next batch gather for a moment. Every batch costs a
                # commit and a settling of the service's state whatever its size, and a
                # stream of tiny batches cost more than the records in them.
                await asyncio.sleep(CONSUMER_LINGER_SECONDS)

    def every(self, seconds: float, work: Callable[[], object], name: str) -> None:
        """Run blocking ``work`` in a worker thread every ``seconds`` while the service runs;
        a failure is logged and the next round goes on. Call before ``start``."""

        async def repeat() -> None:
            while True:
                await asyncio.sleep(seconds)  # a period, not a synchronisation
                try:
                    await asyncio.to_thread(work)
                except Exception:
                    log.exception("periodic %s failed; trying again in %.0fs", name, seconds)

        self._periodic.append((repeat, name))

    async def start(self) -> None:
        settle_heap()
        await self.broker.start()
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox"))
        for repeat, name in self._periodic:
            self._tasks.append(asyncio.create_task(repeat(), name=name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.broker.stop()
        self.application.close()

    async def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` reports: the broker answers, the store answers, how far behind
        the outbox is. Ready means the first two hold and every task is running."""
        broker_ok = await self.broker.ping(timeout=2.0)
        try:
            head = await asyncio.to_thread(self.application.max_position)
            store_ok = True
        except Exception as error:
            log.warning("store check failed: %s", error)
            head, store_ok = 0, False
        tasks_ok = all(not task.done() for task in self._tasks)
        published = self.relay.position if self.relay else head
        return {
            "ready": broker_ok and store_ok and tasks_ok,
            "checks": {
                "broker": broker_ok,
                "store": store_ok,
                "tasks": tasks_ok,
            },
            "log_position": head,
            "outbox_position": published,
            "outbox_backlog": max(head - published, 0),
        }


def service_runtime(request: Request) -> ServiceRuntime:
    """The service process an HTTP app serves (``create_http_app`` keeps it in the app's
    state)."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


#: The service process, for a route.
Runtime = Annotated[ServiceRuntime, Depends(service_runtime)]

A = TypeVar("A", bound=ServiceApplication)


def application_of(kind: type[A]) -> Callable[[Request], A]:
    """A dependency that hands a route the service's application, as a ``kind``."""

    def application(request: Request) -> A:
        found = service_runtime(request).application
        if not isinstance(found, kind):
            raise TypeError(f"this app serves {type(found).__name__}, not {kind.__name__}")
        return found

    return application
