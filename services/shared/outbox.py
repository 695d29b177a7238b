"""The outbox relay: publishes a service's committed events, from its notification log, to
its Kafka topic, in log order, keyed by aggregate id.

Only stored events are ever published (the relay reads the committed log), and none is lost:
the relay records how far it got only after the broker acknowledged everything before, so
after a crash it resumes from there and may publish some events again. Those copies keep
their ``event_id`` and ``position``; consumers drop them by position.

If the broker lost published messages, the relay republishes them from the store, so Kafka
can always be rebuilt from the stores. It checks partition by partition: messages are keyed
by aggregate id, so the relay knows the partition each stored event's message goes to, and a
partition whose last message is behind the latest event published there lost its tail (even
while the other partitions kept theirs). The relay then republishes from just before the
first event a partition lost. It checks when it resumes (at start and after any failure) and,
while idle, every ``tail_check_seconds``, so a broker that lost data while nothing was being
published gets it back without waiting for the next event. If the broker acknowledges an
offset it acknowledged before (it was wiped and took new messages since, which would hide the
loss from a look at the tails), the relay republishes the whole log; so it does when a
partition begins with a later event of this log than the first one stored for it, which is
how that loss still shows after the relay restarted and forgot the offsets. The checks
themselves are in ``services.shared.outbox_checks``.

Several instances of a service may share one store (scale-out on PostgreSQL): a lease on the
store lets only one of them relay at a time; the others stand by and take over when its
database session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata
from eventsourcing.persistence import Recording, Tracking

from contracts.topics import AUDIT_HEADS
from services.shared import outbox_checks
from services.shared.integration_events import Message, Translator, positioned_messages
from services.shared.recorder import Lease
from services.shared.settings import Compression
from services.shared.store import OUTBOX_TRACKING_PREFIX, ServiceApplication
from services.shared.telemetry import (
    OUTBOX_ACTIVE,
    OUTBOX_BACKLOG,
    OUTBOX_ERRORS,
    OUTBOX_POSITION,
    OUTBOX_PUBLISHED,
)

log = logging.getLogger(__name__)

#: Most committed events held in memory for the relay; beyond, it reads them from the store.
MAX_HELD = 50_000
#: How often a busy relay records its position and announces the chain head.
CHECKPOINT_SECONDS = 1.0


class BrokerLostData(RuntimeError):
    """The broker acknowledged an offset it had acknowledged before."""


class OutboxRelay:
    def __init__(
        self,
        application: ServiceApplication,
        topic: str,
        translate: Translator,
        client_options: dict[str, Any],
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        idempotence: bool = True,
        compression: Compression | None = None,
        tail_check_seconds: float = 30.0,
    ) -> None:
        """``tail_check_seconds``: how often an idle relay checks the topic for lost messages
        (``OKR_OUTBOX_TAIL_CHECK_SECONDS``)."""
        self._application = application
        self._topic = topic
        self._translate = translate
        self._client_options = client_options
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._idempotence = idempotence
        self._compression = compression
        self._tail_check_seconds = tail_check_seconds
        self._tracking_name = OUTBOX_TRACKING_PREFIX + topic
        for series in (
            OUTBOX_ACTIVE,
            OUTBOX_ERRORS,
            OUTBOX_PUBLISHED,
            OUTBOX_BACKLOG,
            OUTBOX_POSITION,
        ):
            series.labels(topic)  # present at zero before the first event
        self._wake = asyncio.Event()
        #: (position, domain event) of commits heard since, in the order heard.
        self._committed: deque[tuple[int, Any]] = deque()
        self._committed_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Every event up to this log position has been acknowledged by the broker.
        self.position = 0
        #: The highest position recorded as published in the store.
        self._recorded = 0
        #: The position whose chain head was last published, and when the next checkpoint
        #: is due while busy.
        self._announced = 0
        self._checkpoint_due = 0.0
        #: The highest offset the broker acknowledged per partition of the topic.
        self._offsets: dict[int, int] = {}
        #: Partitions, how far the log was read, and the first event of each partition met.
        self._first_events: tuple[int, int, dict[int, int]] = (0, 0, {})
        #: When the broker was found to have lost messages: the position to republish from,
        #: and the one the republish must reach. Every resume starts there (instead of
        #: checking the topic again) until the relay got that far: a republish that fails
        #: midway leaves the topic looking whole where newer messages follow the loss.
        self._republishing: tuple[int, int] | None = None
        #: What the partitions must end with, and when an idle relay next checks them.
        self._expected = outbox_checks.ExpectedTails(partitions=0)
        #: Where the messages published since the last resume went, for the next check.
        self._published = outbox_checks.PublishedSince(partitions=0, after=0, upto=0)
        self._tail_check_due = 0.0
        #: The check under way: the position to republish after, or None when nothing was lost.
        self._tail_check: asyncio.Task[int | None] | None = None

    def wake_up(self, recordings: Sequence[Recording[UUID]]) -> None:
        """Called from any thread after a commit, so publishing starts at once, with the
        committed events in hand (reading them back from the store costs as much again)."""
        with self._committed_lock:
            if len(self._committed) + len(recordings) <= MAX_HELD:
                self._committed.extend(
                    (recording.notification.id, recording.domain_event) for recording in recordings
                )
            else:  # the broker is away: the store holds them, memory need not
                self._committed.clear()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _next_events(self) -> list[tuple[int, Any]]:
        """The stored events after ``position``, in log order: those heard at commit when they
        follow on without a gap, else read from the store (after a restart, a republish, a
        gap in PostgreSQL's sequence, or commits heard out of order)."""
        held: list[tuple[int, Any]] = []
        with self._committed_lock:
            while self._committed and self._committed[0][0] <= self.position:
                self._committed.popleft()
            for position, domain_event in self._committed:
                if position != self.position + len(held) + 1 or len(held) == self._batch_size:
                    break
                held.append((position, domain_event))
        return held or self._stored_events(self.position)

    def _stored_events(self, after: int, upto: int | None = None) -> list[tuple[int, Any]]:
        """The next batch of (position, domain event) read from the store after ``after``."""
        notifications = self._application.tracking_recorder.select_notifications(
            after + 1, self._batch_size, stop=upto
        )
        to_domain_event = self._application.mapper.to_domain_event
        return [(notification.id, to_domain_event(notification)) for notification in notifications]

    async def run(self) -> None:
        """Publish until cancelled; survives broker outages by retrying with back-off.

        The relay has a producer of its own (idempotent, all replicas acknowledge), apart from
        the service's FastStream broker: it sends whole batches and waits for them at once.
        After any failure it starts over with a new producer and a new look at the topic: an
        idempotent producer that met a broker which lost its state never recovers
        (OutOfOrderSequenceNumber), and a broker that restarted may have lost the topic's data.
        """
        self._loop = asyncio.get_running_loop()
        self._application.on_recorded(self.wake_up)
        delay = 0.1
        lease: Lease | None = None
        try:
            while True:
                try:
                    lease = await self._keep_lease(lease)
                    self.position = await self._resume_position()
                    self._published = outbox_checks.PublishedSince(0, self.position, self.position)
                    async for _ in self._publish_while_leading(lease):
                        delay = 0.1
                except (Exception, asyncio.CancelledError) as failure:
                    if isinstance(failure, asyncio.CancelledError) and _cancelled():
                        raise  # the service stops the relay
                    # Anything else fails this round only, a cancellation that a library let
                    # out of itself too: a relay that ended would publish nothing, silently.
                    OUTBOX_ERRORS.labels(self._topic).inc()
                    log.exception("outbox relay to %s failed; retry in %.1fs", self._topic, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        finally:
            OUTBOX_ACTIVE.labels(self._topic).set(0)
            if lease is not None:
                await asyncio.to_thread(lease.release)

    async def _publish_while_leading(self, lease: Lease) -> AsyncIterator[int]:
        """Publish with one producer for as long as it works and the lease holds; yields after
        each published batch."""
        producer = AIOKafkaProducer(
            enable_idempotence=self._idempotence,  # no duplicates or reordering from retries
            acks="all",
            linger_ms=5,
            max_batch_size=512 * 1024,
            compression_type=self._compression,
            **self._client_options,
        )
        await producer.start()
        try:
            while await asyncio.to_thread(lease.alive):
                published = await self.publish_pending(producer)
                yield published
                if self._tail_lost(idle=published == 0):
                    return  # to republish with a new producer
                if published == 0:
                    await self._idle()
        finally:
            if self._tail_check is not None:
                self._tail_check.cancel()
                self._tail_check = None
            with contextlib.suppress(Exception):  # a broker that is gone cannot take a flush
                await asyncio.wait_for(producer.stop(), 10)

    async def _keep_lease(self, lease: Lease | None) -> Lease:
        """The lease, still held, or a new one after waiting for it (another instance may
        have relayed meanwhile: the relay resumes from the store after it)."""
        if lease is not None and await asyncio.to_thread(lease.alive):
            return lease
        return await self._lead()

    async def _lead(self) -> Lease:
        """Wait until this instance holds the relay's lease on the store."""
        OUTBOX_ACTIVE.labels(self._topic).set(0)
        while True:
            lease = await asyncio.to_thread(
                self._application.tracking_recorder.try_lease, self._tracking_name
            )
            if lease is not None:
                OUTBOX_ACTIVE.labels(self._topic).set(1)
                return lease
            await asyncio.sleep(self._poll_seconds)

    async def _idle(self) -> None:
        self._wake.clear()
        # Another commit may have landed between the read and the clear.
        if await asyncio.to_thread(self._application.max_position) > self.position:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    async def _resume_position(self) -> int:
        """Where to publish from: what the store recorded as published, or just before the
        first event a partition of the topic lost."""
        recorded = await asyncio.to_thread(
            self._application.tracking_recorder.max_tracking_id, self._tracking_name
        )
        recorded = self._recorded = recorded or 0
        self._announced = 0  # the broker may have lost the heads too: announce again
        self._offsets.clear()  # a new producer, perhaps a new broker: offsets from now on
        self._tail_check_due = time.monotonic() + self._tail_check_seconds
        if self._republishing is not None:
            return min(self._republishing[0], recorded)
        lost_from = await self._lost_from(recorded)
        return recorded if lost_from is None else min(lost_from, recorded)

    def _tail_lost(self, idle: bool) -> bool:
        """Whether a partition of the topic lost messages the broker acknowledged (the relay
        then republishes them), as the last check found.

        When idle, every ``tail_check_seconds``, a check starts; it runs beside the
        publishing, which it must not hold back: it reads the topic for a second or more on
        a busy machine, and readings recorded meanwhile would wait. What is published while
        it runs cannot pass for a loss (a tail newer than the check expected is none)."""
        check = self._tail_check
        if check is not None and check.done():
            self._tail_check = None
            lost_from = check.result()  # a check that failed fails the relay, which starts over
            if lost_from is not None:
                self._republishing = (lost_from, self.position)
                return True
        if idle and self._tail_check is None and time.monotonic() >= self._tail_check_due:
            self._tail_check_due = time.monotonic() + self._tail_check_seconds
            published = dataclasses.replace(self._published, latest=dict(self._published.latest))
            self._tail_check = asyncio.create_task(self._lost_from(self.position, published))
            self._tail_check.add_done_callback(lambda _: self._wake.set())
        return False

    async def _lost_from(
        self, upto: int, published: outbox_checks.PublishedSince | None = None
    ) -> int | None:
        """The position to republish after when a partition of the topic lost events
        published up to ``upto`` (of which ``published``, if given, says where this relay's
        latest messages went); None when none did."""
        tails = await outbox_checks.published_tails(self._client_options, self._topic)
        position = await asyncio.to_thread(self._republish_position, tails, upto, published)
        if position is None and await self._lost_beginning(upto, len(tails) or 1):
            position = 0
        if position is not None:
            log.warning(
                "%s lost published events (last positions per partition: %s; latest published "
                "per partition: %s): republishing after position %s",
                self._topic,
                tails,
                self._expected.latest,
                position,
            )
        return position

    async def _lost_beginning(self, upto: int, partitions: int) -> bool:
        """Whether a partition of the topic lost its beginning (see
        ``outbox_checks.beginnings_lost``)."""
        expected_first, epochs = await asyncio.to_thread(self._firsts, upto, partitions)
        lost = await outbox_checks.beginnings_lost(
            self._client_options, self._topic, expected_first, epochs
        )
        if lost:
            log.warning(
                "%s partitions %s lost their beginning (first events expected at %s): "
                "republishing the whole log",
                self._topic,
                lost,
                expected_first,
            )
        return bool(lost)

    def _firsts(self, upto: int, partitions: int) -> tuple[dict[int, int], set[str]]:
        """The first stored event of each partition up to ``upto``, and the epochs the store
        knows. Kept between checks (a log's first events never change), so that the log is
        read once at most, and only while some partition has not met its first event."""
        if self._first_events[0] != partitions:
            self._first_events = (partitions, 0, {})
        _, scanned, expected_first = self._first_events
        if len(expected_first) < partitions and upto > scanned:
            placed = self._placed(scanned, upto, False, partitions)
            self._first_events = (
                partitions,
                upto,
                outbox_checks.first_met(placed, partitions, expected_first),
            )
        epochs = {name for _, name in self._application.tracking_recorder.select_epochs()}
        return dict(self._first_events[2]), epochs | {""}

    def _republish_position(
        self,
        tails: Mapping[int, int | None],
        upto: int,
        published: outbox_checks.PublishedSince | None = None,
    ) -> int | None:
        """``outbox_checks.republish_position`` for this relay's topic, whose partitions end
        with ``tails``, from the stored events and what the relay ``published``."""
        partitions = len(tails) or 1  # a missing topic lost everything: as one empty partition
        if self._expected.partitions != partitions:
            self._expected = outbox_checks.ExpectedTails(partitions)
        read = functools.partial(self._placed, partitions=partitions)
        if published is not None:
            # Placing each stored event decodes and translates it: while publishing, one
            # partition may go without a message for tens of thousands of events.
            self._expected.catch_up(published, read)
        return outbox_checks.republish_position(self._expected, tails, upto, read)

    def _placed(
        self, after: int, upto: int, newest_first: bool, partitions: int
    ) -> Iterator[outbox_checks.Placed]:
        """The stored events in (after, upto], each with the partition its message goes to,
        read a page at a time (in log order, or newest first)."""
        starts = range(after, upto, self._batch_size)
        for start in reversed(starts) if newest_first else starts:
            page = self._stored_events(start, min(start + self._batch_size, upto))
            for position, domain_event in reversed(page) if newest_first else page:
                publication = self._translate(domain_event, position)
                yield (
                    position,
                    None
                    if publication is None
                    else outbox_checks.partition_of(publication.key, partitions),
                )

    def _prepare(self) -> tuple[int, list[tuple[int, Message]]]:
        """Read the next stored events and encode them (in a worker thread: this is CPU work
        the event loop need not wait for). Returns the last position read and the messages,
        each with its event's position."""
        events = self._next_events()
        messages = positioned_messages(events, self._translate, self._application.log_epochs())
        return (events[-1][0] if events else self.position), messages

    async def publish_pending(self, producer: AIOKafkaProducer) -> int:
        """Publish the next batch of stored events; returns how many log positions it moved
        past (internal events move the position without a message)."""
        last, positioned = await asyncio.to_thread(self._prepare)
        messages = [message for _, message in positioned]
        self._check_offsets(await send_batches(producer, self._topic, messages))
        await self._note_published(producer, positioned, last)
        advanced = last - self.position
        self._reached(last)
        OUTBOX_PUBLISHED.labels(self._topic).inc(len(messages))
        if time.monotonic() >= self._checkpoint_due:
            await self._checkpoint(producer)
        await self._report_backlog()
        return advanced

    async def _note_published(
        self, producer: AIOKafkaProducer, positioned: Sequence[tuple[int, Message]], last: int
    ) -> None:
        """Keep where the acknowledged messages of the events up to ``last`` went."""
        if positioned:
            partitions = len(await producer.partitions_for(self._topic))
            if partitions != self._published.partitions:  # the first messages, or more partitions
                self._published = outbox_checks.PublishedSince(
                    partitions, self.position, self.position
                )
            self._published.note(
                (
                    (position, outbox_checks.partition_of(key, partitions))
                    for position, (key, _, _) in reversed(positioned)
                ),
                last,
            )
        else:
            self._published.upto = last

    def _reached(self, position: int) -> None:
        """Everything up to ``position`` is acknowledged: a republish that got this far is
        done."""
        self.position = position
        if self._republishing is not None and position >= self._republishing[1]:
            self._republishing = None

    def _check_offsets(self, acknowledged: Sequence[tuple[RecordMetadata, int]]) -> None:
        """Offsets only grow in a partition: one the broker gives again means it lost what it
        had acknowledged (its data was wiped), though it took the new messages without a
        complaint. Everything is published again then, from the start of the log.
        ``acknowledged``: each batch's first offset, with its number of records."""
        for metadata, records in acknowledged:
            if metadata.offset <= self._offsets.get(metadata.partition, -1):
                self._republishing = (0, max(self.position, self._recorded))
                raise BrokerLostData(
                    f"{self._topic}[{metadata.partition}] acknowledged offset {metadata.offset} "
                    f"again, after {self._offsets[metadata.partition]}: republishing all"
                )
            self._offsets[metadata.partition] = metadata.offset + records - 1

    async def _checkpoint(self, producer: AIOKafkaProducer) -> None:
        """Record in the store how far the relay got, and announce the chain head there, at
        most once a second (an idle relay looks every ``poll_seconds``). Each costs store
        round trips, which for a trickle of small batches were most of the relay's work; a
        crash republishes the events published since the last record, as it always could."""
        self._checkpoint_due = time.monotonic() + CHECKPOINT_SECONDS
        if self.position != self._announced:
            await self._publish_head(producer, self.position)
            self._announced = self.position
        if self.position > self._recorded:  # a republished stretch was recorded before
            await asyncio.to_thread(
                self._application.tracking_recorder.insert_tracking,
                Tracking(self._tracking_name, self.position),
            )
            self._recorded = self.position

    async def _publish_head(self, producer: AIOKafkaProducer, position: int) -> None:
        """Publish where the tamper-evident chain stands, so that removing events from the end
        of the log (with their links) is caught by comparing with Kafka."""
        chained = await asyncio.to_thread(self._application.tracking_recorder.link_at, position)
        if chained is None:
            return
        head = {"producer": self._application.name, "position": position, "hash": chained}
        delivery = await producer.send(
            AUDIT_HEADS, json.dumps(head).encode(), key=self._application.name.encode()
        )
        # Awaited: a broker that refuses the head (it lost the producer's state) has lost
        # data, and the relay must start over and look, not go on.
        await delivery

    async def _report_backlog(self) -> None:
        head = await asyncio.to_thread(self._application.max_position)
        OUTBOX_BACKLOG.labels(self._topic).set(max(head - self.position, 0))
        OUTBOX_POSITION.labels(self._topic).set(self.position)


def _cancelled() -> bool:
    """Whether the running task was asked to stop (not just handed a CancelledError)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def send_batches(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[Message]
) -> list[tuple[RecordMetadata, int]]:
    """Send ``messages`` to ``topic`` as record batches, one per partition (another when one
    is full), each message to the partition its key gives, in order; returns each batch's
    acknowledgement (its first offset) with its number of records. A whole batch costs
    aiokafka a fraction of what sending its messages one by one does: no coroutine and no
    future per message."""
    if not messages:
        return []  # an idle relay asks the broker nothing
    partitions = len(await producer.partitions_for(topic))
    filling: dict[int, BatchBuilder] = {}
    sent: list[tuple[asyncio.Future[RecordMetadata], int]] = []

    async def send(batch: BatchBuilder, partition: int) -> None:
        delivery = await producer.send_batch(batch, topic, partition=partition)
        sent.append((delivery, batch.record_count()))

    for key, value, headers in messages:
        partition = outbox_checks.partition_of(key, partitions)
        # Until the message is in a batch: a full batch is sent and a new one begun (an
        # empty batch takes any one message, so this ends).
        while (batch := filling.get(partition)) is None or batch.append(
            timestamp=None, key=key, value=value, headers=headers
        ) is None:
            if batch is not None:
                await send(batch, partition)
            filling[partition] = producer.create_batch()
    for partition, batch in filling.items():
        await send(batch, partition)
    acknowledged = await asyncio.gather(*(delivery for delivery, _ in sent))
    return [(metadata, count) for metadata, (_, count) in zip(acknowledged, sent, strict=True)]
