"""Where the services change how ``aiokafka``, and FastStream's Kafka subscriber, work inside:
every override of one of their private methods is here and nowhere else (the long polling for
noida-db, confined to that broker, lives in ``long_poll``). Each relies on how the pinned
versions (pyproject.toml) work inside, as its docstring says; ``tests/unit/test_kafka_seams.py``
fails when an upgrade changes that, and ``tests/integration/test_kafka_seams.py`` shows the
broker behaviour the commit seam guards against.
"""

from __future__ import annotations

import asyncio
from itertools import chain
from typing import Any

import aiokafka.consumer.consumer
from aiokafka import errors
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.commit import OffsetCommitRequest
from faststream.kafka.subscriber.usecase import BatchSubscriber

__all__ = ["BATCH_POLL_MS", "IDLE_FETCH_WAIT_MS", "QuietlyClosingFetcher", "install"]

#: How long the broker may hold the fetch of a consumer that found nothing last time: it
#: answers as soon as one record comes, so this costs no latency, only idle wake-ups.
IDLE_FETCH_WAIT_MS = 500

#: How long a batch subscriber's poll waits for records before it comes back empty: it comes
#: back as soon as one is fetched, so this costs no latency, only idle wake-ups.
BATCH_POLL_MS = 1000

_library_commit = GroupCoordinator._do_commit_offsets
_library_poll = BatchSubscriber.get_msg


async def _commit_as_a_member(self: Any, assignment: Any, offsets: Any) -> None:
    """Commit offsets only as a member of the group, never with "no generation".

    When a commit or a heartbeat finds the group changed, aiokafka forgets its generation and
    rejoins; a commit sent meanwhile goes out with generation -1, which Kafka takes for a
    consumer outside group management and accepts whenever the group is empty or unknown. A
    broker that lost its data knows no group: that commit then stores the positions the
    consumer had in the lost log, the rejoin resumes from them in the new log, and the
    records before them are never read. Kafka's Java consumer refuses such a commit; so does
    this. The refusal is a failed commit (the batch comes again after the rejoin, and tracking
    skips what was applied).

    Relies on ``_do_commit_offsets`` reading ``self.generation`` before its first await (so
    nothing changes it between this check and the request), on ``self._subscription`` being
    the consumer's subscription state, and on ``commit_offsets`` turning
    ``IllegalGenerationError`` into ``CommitFailedError`` without retrying.
    """
    if (
        self.generation == OffsetCommitRequest.DEFAULT_GENERATION_ID
        and self._subscription.partitions_auto_assigned()
    ):
        raise errors.IllegalGenerationError(
            f"not committing for group {self.group_id}: rejoining it, no generation"
        )
    await _library_commit(self, assignment, offsets)


class QuietlyClosingFetcher(Fetcher):  # type: ignore[misc]
    """A fetcher whose close lets go of the fetches in flight without raising their
    cancellation: the library awaits each fetch it cancels, so one retrying while the broker
    was away raised ``CancelledError`` out of ``consumer.stop()``, leaving the client open,
    and the caller took it for its own cancellation (an idle outbox relay whose tail check met
    a broker restart ended so, silently, and published nothing more). The base of every
    fetcher the services install (here and in ``long_poll``).

    Relies on ``close`` cancelling the fetch routine before it awaits the tasks in
    ``_pending_tasks``.
    """

    _pending_tasks: set[asyncio.Task[Any]]

    async def close(self) -> None:
        in_flight = list(self._pending_tasks)
        self._pending_tasks.clear()  # the library's close awaits none of them, then
        try:
            await super().close()
        finally:
            for task in in_flight:
                task.cancel()
            # Their cancellations come back as results; a cancellation of the caller still
            # raises here.
            await asyncio.gather(*in_flight, return_exceptions=True)


class _AdaptiveFetcher(QuietlyClosingFetcher):
    """Fetches that gather batches under traffic and cost nothing while idle.

    A consumer's ``fetch_min_bytes`` and ``fetch_max_wait_ms`` hold for a fetch that follows
    one that found records: under a steady trickle the broker gathers a batch for up to the
    wait, instead of answering record by record (every batch costs a commit and a settling of
    the state, whatever its size). After a fetch that found nothing, the next asks for one
    byte and may wait ``IDLE_FETCH_WAIT_MS``: an idle consumer wakes a few times a second
    instead of at every short wait, and the first record after a pause goes through at once.

    Relies on ``Fetcher`` keeping both settings in ``_fetch_min_bytes`` and
    ``_fetch_max_wait_ms``, read for every request it builds, and on ``_proc_fetch_request``
    returning whether the fetch added records.
    """

    _fetch_min_bytes: int
    _fetch_max_wait_ms: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy = (self._fetch_min_bytes, self._fetch_max_wait_ms)
        self._idle = (1, max(IDLE_FETCH_WAIT_MS, self._fetch_max_wait_ms))

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        found: bool = await super()._proc_fetch_request(assignment, node_id, request)
        self._fetch_min_bytes, self._fetch_max_wait_ms = self._busy if found else self._idle
        return found


async def _poll_without_pause(self: Any, consumer: Any) -> tuple[Any, ...]:
    """A batch subscriber's poll: the records ``getmany`` hands over within the subscriber's
    ``batch_timeout_ms``, and no pause after an empty poll. FastStream sleeps as long again
    after one, so a record fetched meanwhile waited that long before it was handled (the first
    after a quiet spell, at every hop), and an idle consumer woke twice per poll.

    Relies on ``BatchSubscriber.get_msg(consumer)`` being the poll of the subscriber's consume
    loop, with ``batch_timeout_ms`` and ``max_records`` on the subscriber; and on aiokafka's
    ``getmany`` coming back empty only when its timeout ran out or the consumer was stopped
    (then the next poll raises ``ConsumerStoppedError``, which ends the loop): a poll that
    came back empty at once would make this loop spin.
    """
    batches = await consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.max_records)
    return tuple(chain.from_iterable(batches.values()))


def install() -> None:
    """Apply the seams to every consumer the process makes from now on (once is enough;
    again is harmless)."""
    GroupCoordinator._do_commit_offsets = _commit_as_a_member
    aiokafka.consumer.consumer.Fetcher = _AdaptiveFetcher
    BatchSubscriber.get_msg = _poll_without_pause  # type: ignore[method-assign]
