"""The ceiling the message contracts set on ingest and pipeline, measured beside the limit.

A stage here does the least any service on these contracts must do per message: decode it
with the contract models (as the services' consumers do) and encode the message it causes
(as their relays do), then produce it. It stores nothing and scores nothing. One stage
(``kpi.readings`` -> ``KPIRecorded``) bounds the ingest figure; two chained stages, each in a
process of its own (-> ``KeyResultScored``), bound the pipeline figure; a consumer that only
decodes the ``KPIRecorded`` messages bounds the alignment rebuild, which reads the same. What
the services reach is what is left of these ceilings after storing, exactly-once tracking and
scoring.

Topics of its own, deleted afterwards: on noida-db every byte held costs CPU later.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts import (
    Envelope,
    Health,
    KeyResultScored,
    KPIRecorded,
    PaceStatus,
    parse_event,
)
from services.metrics.policy import parse_reading
from services.shared import long_poll
from services.shared.consumer import event_type_header
from services.shared.integration_events import Publication, encode_messages, publication_for
from services.shared.outbox import send_batches
from services.shared.settings import Compression, Settings

PREFIX = "bench.ceiling"
#: Records per fetch, as in the pass-through.
FETCH = 2000

#: What a stage does with each message: "record" and "score" answer it, "decode" only reads it.
Transform = Literal["record", "score", "decode"]


def recorded(value: bytes | None, position: int) -> Publication:
    """What metrics publishes for a raw reading, without storing it."""
    reading = parse_reading(value)
    payload = {
        "kpi": reading.kpi,
        "value": reading.value,
        "observed_at": reading.observed_at,
        "source": reading.source,
        "reading_id": str(reading.reading_id),
        "unit": reading.unit,
        "health": Health.healthy.value,
    }
    return _publication(KPIRecorded, reading.kpi, position, payload)


def scored(value: bytes | None, event_type: str | None, position: int) -> Publication:
    """What alignment publishes for a ``KPIRecorded``, without storing or scoring it."""
    event = parse_event(value or b"", event_type)
    assert isinstance(event, KPIRecorded)
    payload = {
        "objective_id": "ceiling",
        "key_result_id": event.payload.kpi,
        "score": 0.5,
        "progress": 0.5,
        "value": event.payload.value,
        "expected": 0.5,
        "status": PaceStatus.on_track.value,
        "as_of": datetime.now(UTC),
        "lineage": [],
    }
    return _publication(KeyResultScored, "ceiling", position, payload)


@dataclass(frozen=True)
class _Stored:
    """What the relay's ``publication_for`` reads of a stored event; a ceiling stores nothing."""

    originator_version: int
    timestamp: datetime


def _publication(
    event_class: type[Envelope], aggregate_id: str, position: int, payload: dict[str, Any]
) -> Publication:
    stored = _Stored(originator_version=position, timestamp=datetime.now(UTC))
    return publication_for(event_class, stored, position, payload, aggregate_id, trusted=True)


async def _run_stage(
    bootstrap: str,
    source: str,
    sink: str | None,
    transform: Transform,
    count: int,
    compression: Compression | None,
    ready: Event,
) -> tuple[float, float]:
    """Move ``count`` messages; returns when the first arrived and the last was acknowledged
    (monotonic clock, the same in every process)."""
    pause = Settings().kafka_empty_fetch_pause  # the bench sets it for noida-db, as services
    if pause:
        long_poll.install(pause)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"{source}.stage",
        auto_offset_reset="earliest",
        max_poll_records=FETCH,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        max_batch_size=512 * 1024,
        compression_type=compression,
    )
    await consumer.start()
    await producer.start()
    try:
        moved, began = 0, None
        while moved < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=FETCH)
            if consumer.assignment():
                ready.set()
            records = [record for batch in batches.values() for record in batch]
            if records and began is None:
                began = time.monotonic()
            events = []
            for record in records:
                moved += 1
                if transform == "record":
                    events.append((moved, recorded(record.value, moved)))
                elif transform == "score":
                    events.append((moved, scored(record.value, event_type_header(record), moved)))
                else:
                    parse_event(record.value or b"", event_type_header(record))
            if sink is not None:  # as the services' relays send
                await send_batches(producer, sink, encode_messages(events, lambda event, *_: event))
            await consumer.commit()
        assert began is not None
        return began, time.monotonic()
    finally:
        await consumer.stop()
        await producer.stop()


def _stage_process(
    bootstrap: str,
    source: str,
    sink: str | None,
    transform: Transform,
    count: int,
    compression: Compression | None,
    ready: Event,
    times: Any,
) -> None:
    times.put(
        asyncio.run(_run_stage(bootstrap, source, sink, transform, count, compression, ready))
    )


def ceilings(
    bootstrap: str,
    count: int,
    partitions: int,
    compression: Compression | None,
    produce: Callable[[str, int], float],
) -> tuple[float, float, float]:
    """Readings/s through one stage (messages waiting, as the ingest figure's), through
    two chained stages (readings sent while they run, as the pipeline figure's), and
    ``KPIRecorded`` messages/s decoded (waiting, as the alignment rebuild's).
    ``produce(topic, first)`` sends ``count`` readings from number ``first`` and returns when
    it sent the first."""
    context = multiprocessing.get_context("spawn")  # a clean process, like a service
    topics = [f"{PREFIX}.{name}" for name in ("readings", "recorded", "readings2", "recorded2")]
    topics.append(f"{PREFIX}.scored")
    asyncio.run(_topics(bootstrap, topics, partitions, create=True))
    try:

        def stage(source: str, sink: str | None, transform: Transform) -> tuple[Any, Event, Any]:
            ready, times = context.Event(), context.Queue()
            process = context.Process(
                target=_stage_process,
                args=(bootstrap, source, sink, transform, count, compression, ready, times),
            )
            process.start()
            return process, ready, times

        produce(topics[0], 0)
        process, _, times = stage(topics[0], topics[1], "record")
        first, last = times.get()
        process.join()
        one_stage = count / (last - first)

        process, _, times = stage(topics[1], None, "decode")
        first, last = times.get()
        process.join()
        decoded = count / (last - first)

        stages = [
            stage(topics[2], topics[3], "record"),
            stage(topics[3], topics[4], "score"),
        ]
        for _, ready, _ in stages:
            if not ready.wait(60):
                raise TimeoutError("a ceiling stage did not join its group")
        began = produce(topics[2], count)
        results = [times.get() for _, _, times in stages]
        for process, _, _ in stages:
            process.join()
        two_stages = count / (results[-1][1] - began)
        return one_stage, two_stages, decoded
    finally:
        asyncio.run(_topics(bootstrap, topics, partitions, create=False))


async def _topics(bootstrap: str, topics: list[str], partitions: int, create: bool) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(topic, partitions, 1) for topic in topics])
        else:
            await admin.delete_topics(topics)
    finally:
        await admin.close()
