"""The live feed: a Kafka consumer of ``alignment.events`` whose news reaches open pages as
server-sent events.

Each console process wants every event from now on, not a share of them: its consumer joins
no group (every partition assigned to it, nothing committed) and starts at the end of each
partition. An event only names what changed (``objective-<id>``, ``gaps``); the page then asks
for its fragment with the user's own token, so the services still decide what each user sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from contracts import ALIGNMENT_EVENTS
from services.shared import long_poll
from services.shared.broker import topic_partitions
from services.shared.settings import Settings
from services.web.pages import CurrentSession, console
from services.web.telemetry import LIVE_EVENTS, SSE_CONNECTIONS

log = logging.getLogger(__name__)

#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
#: Wait before connecting again after Kafka failed.
RETRY_SECONDS = 2.0
#: Tell the browser how soon to reconnect a dropped stream (milliseconds).
RECONNECT_MS = 1000


class Listener:
    """One open page's share of the news: the names of what changed since it last looked."""

    def __init__(self) -> None:
        self.changed: set[str] = set()
        self.news = asyncio.Event()

    def tell(self, names: set[str]) -> None:
        self.changed |= names
        self.news.set()

    def take(self) -> set[str]:
        names, self.changed = self.changed, set()
        self.news.clear()
        return names


def changed_names(event: dict[str, Any]) -> set[str]:
    """What an alignment event changes, as event names for the pages."""
    payload = event.get("payload") or {}
    if event.get("event_type") in ("GapDetected", "GapResolved"):
        return {"gaps"}
    objective_id = payload.get("objective_id")
    return {f"objective-{objective_id}"} if isinstance(objective_id, str) else set()


class LiveFeed:
    def __init__(self, platform: Settings) -> None:
        self.platform = platform
        self.listeners: set[Listener] = set()
        #: True once the consumer sits at the end of every partition: news from then on is seen.
        self.ready = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.platform.kafka_empty_fetch_pause:
            long_poll.install(self.platform.kafka_empty_fetch_pause)
        self._task = asyncio.create_task(self._run(), name="live-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def publish(self, names: set[str]) -> None:
        for listener in self.listeners:
            listener.tell(names)

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except (KafkaError, OSError) as error:
                self.ready = False
                log.warning("live feed: Kafka failed (%s); connecting again", type(error).__name__)
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, **self.platform.kafka_client_options()
        )
        await consumer.start()
        try:
            partitions = await topic_partitions(consumer, ALIGNMENT_EVENTS)
            if not partitions:
                raise KafkaError(f"no topic {ALIGNMENT_EVENTS}")
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for partition in partitions:
                await consumer.position(partition)  # resolved now: nothing after is missed
            self.ready = True
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                names: set[str] = set()
                for records in batches.values():
                    LIVE_EVENTS.inc(len(records))
                    for record in records:
                        with contextlib.suppress(ValueError, AttributeError):
                            names |= changed_names(json.loads(record.value))
                if names:
                    self.publish(names)
        finally:
            self.ready = False
            await consumer.stop()


async def stream(request: Request, feed: LiveFeed) -> AsyncGenerator[str]:
    listener = Listener()
    feed.listeners.add(listener)
    SSE_CONNECTIONS.inc()
    try:
        yield f"retry: {RECONNECT_MS}\n: connected\n\n"
        while not await request.is_disconnected():
            try:
                await asyncio.wait_for(listener.news.wait(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            for name in sorted(listener.take()):
                yield f"event: {name}\ndata: {name}\n\n"
    finally:
        SSE_CONNECTIONS.dec()
        feed.listeners.discard(listener)


router = APIRouter()


@router.get("/live", include_in_schema=False)
async def live(request: Request, _: CurrentSession) -> StreamingResponse:
    """News for the open page, for signed-in users only."""
    return StreamingResponse(
        stream(request, console(request).feed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
