"""Long polling for Kafka consumers, whatever the broker.

A Kafka broker holds a fetch that finds no new records for up to ``fetch.max.wait.ms`` before
it answers. noida-db, the development broker, answers at once: every idle aiokafka consumer
then sends about 5,000 fetches a second, which costs most of a core in each service and a
fifth of one in the broker (measured on the 2-core development machine: the three services
idling took 1.6 cores). ``install`` makes every aiokafka consumer of the process wait a
little after a fetch that came back empty sooner than that: on a broker that long-polls the
empty answer comes after ``fetch.max.wait.ms`` and nothing changes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiokafka.consumer.consumer
from aiokafka.consumer.fetcher import Fetcher

#: The least time between two fetches from one broker when the first found nothing: what a
#: record arriving in between may wait, at most, before it is fetched.
EMPTY_FETCH_PAUSE = 0.02

__all__ = ["EMPTY_FETCH_PAUSE", "install"]


class _PatientFetcher(Fetcher):  # type: ignore[misc]
    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        began = time.monotonic()
        found: bool = await super()._proc_fetch_request(assignment, node_id, request)
        if not found:
            rest = EMPTY_FETCH_PAUSE - (time.monotonic() - began)
            if rest > 0:
                try:
                    await asyncio.sleep(rest)  # the wait the broker did not do
                except asyncio.CancelledError:
                    # As the library's own fetch: the consumer's close awaits its cancelled
                    # fetches and expects them to end quietly.
                    return False
        return found


def install() -> None:
    """Make the consumers created from now on in this process use the patient fetcher."""
    aiokafka.consumer.consumer.Fetcher = _PatientFetcher
