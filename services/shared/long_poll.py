"""Long polling for Kafka consumers on a broker that does not hold empty fetches: noida-db,
``make run``'s development broker, only (``OKR_KAFKA_EMPTY_FETCH_PAUSE``, which ``make run``
sets for it).

Apache Kafka holds a fetch that finds no new records for up to ``fetch.max.wait.ms`` before it
answers. noida-db answers at once: every idle aiokafka consumer then sends thousands of
fetches a second, which costs most of a core in each service and much of one in the broker.
``install`` makes every aiokafka consumer of the process wait a little after a fetch that
came back empty sooner than that. Nothing that runs on Apache Kafka installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import aiokafka.consumer.consumer

from services.shared.kafka_seams import QuietlyClosingFetcher

#: The least time between two fetches from one broker when the first found nothing: what a
#: record arriving in between may wait, at most, before it is fetched.
EMPTY_FETCH_PAUSE = 0.02

__all__ = ["EMPTY_FETCH_PAUSE", "install", "installed"]

_pause = EMPTY_FETCH_PAUSE


class _PatientFetcher(QuietlyClosingFetcher):
    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        began = time.monotonic()
        found: bool = await super()._proc_fetch_request(assignment, node_id, request)
        if not found:
            rest = _pause - (time.monotonic() - began)
            if rest > 0:
                await asyncio.sleep(rest)  # the wait the broker did not do
        return found


def install(pause: float = EMPTY_FETCH_PAUSE) -> None:
    """Make the consumers created from now on in this process wait ``pause`` seconds at least
    between two fetches of which the first found nothing."""
    global _pause
    _pause = pause
    aiokafka.consumer.consumer.Fetcher = _PatientFetcher


@contextlib.contextmanager
def installed(pause: float = EMPTY_FETCH_PAUSE) -> Iterator[None]:
    """``install`` for the consumers made inside the block only (a process that talks to
    both brokers: the benchmark)."""
    before = aiokafka.consumer.consumer.Fetcher
    install(pause)
    try:
        yield
    finally:
        aiokafka.consumer.consumer.Fetcher = before
