"""The outbox relay's checks of what its topic still holds on the broker: each partition must
still end with the latest event published there (its tail) and begin with the first event
stored for it (its beginning); and where to republish from when one does not.

Apart from the relay (``services.shared.outbox``), which decides when to check and republishes
what they find lost: these read the topic and place stored events on its partitions, and none
of them publishes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from services.shared.broker import read_partitions


async def published_tails(client_options: dict[str, Any], topic: str) -> dict[int, int | None]:
    """The producer ``position`` of the last message in each partition of ``topic`` (None for
    an empty partition); no partitions when the topic is missing."""
    partitions = await read_partitions(client_options, topic, last=1)
    return {
        partition: _origin(records[-1])[0] if records else None
        for partition, records in partitions.items()
    }


def first_met(
    placed: Iterable[Placed], partitions: int, already: Mapping[int, int] | None = None
) -> dict[int, int]:
    """The position of the first event met for each partition (``already`` met ones kept),
    in the order ``placed`` gives them; reading stops as soon as every partition has one."""
    met = dict(already or {})
    for position, partition in placed:
        if partition is not None and partition not in met:
            met[partition] = position
            if len(met) == partitions:
                break
    return met


def _origin(record: Any) -> tuple[int, str]:
    envelope = json.loads(record.value)
    return envelope["position"], envelope.get("epoch", "")


async def beginnings_lost(
    client_options: dict[str, Any], topic: str, expected_first: Mapping[int, int], epochs: set[str]
) -> list[int]:
    """The partitions that lost their beginning: none of their messages is the first event
    stored for them (``expected_first``), though they hold later ones of this log. A broker
    that lost its data and then took new messages shows whole tails; only this shows the loss.
    A partition is read only until a message answers: at once when it is whole, past the new
    messages when the lost ones were published again since. Messages of epochs the store does
    not know (a rebuilt store's topic) have positions that do not compare: they answer too."""

    def answers(record: Any) -> bool:
        position, epoch = _origin(record)
        expected = expected_first.get(record.partition)
        return epoch not in epochs or expected is None or position <= expected

    partitions = await read_partitions(client_options, topic, until=answers)
    return sorted(
        partition
        for partition, records in partitions.items()
        if partition in expected_first and records and not answers(records[-1])
    )


#: A stored event as the tail check sees it: its log position and the partition its message
#: goes to (None for an internal event, which has no message).
Placed = tuple[int, int | None]
#: The stored events in (after, upto] as ``Placed``: in log order, or newest first if asked.
PlacedReader = Callable[[int, int, bool], Iterable[Placed]]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the relay sends a message keyed ``key`` to: where Kafka's default
    partitioner puts it (murmur2 of the key, as the Java client and aiokafka)."""
    return _key_hash(key) % partitions


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    # Pure-Python murmur2 costs more than the rest of sending a message: a service publishes
    # many events for each of a bounded set of aggregates, so each key is hashed once.
    hashed: int = murmur2(key) & 0x7FFFFFFF
    return hashed


@dataclass
class ExpectedTails:
    """What each partition of a topic of ``partitions`` partitions must end with at least:
    ``latest`` is the position of the latest stored event whose message goes there, among
    the events up to ``upto`` (a partition that none goes to is absent). Kept between checks,
    so that a check reads only the events stored since the last one."""

    partitions: int
    upto: int = 0
    latest: dict[int, int] = field(default_factory=dict)

    def read(self, newest_first: Iterable[Placed], upto: int) -> None:
        """Bring ``latest`` up to ``upto`` from the events after ``self.upto``, newest first;
        reading stops as soon as every partition has met its latest event."""
        self.latest |= first_met(newest_first, self.partitions)
        self.upto = max(self.upto, upto)

    def catch_up(self, published: PublishedSince, read: PlacedReader) -> None:
        """Bring ``latest`` up to ``published.upto``: the store is read only up to where the
        relay's publishing began (once per resume), the rest is what it published since."""
        if published.partitions != self.partitions or self.upto > published.upto:
            return  # placed for other partitions, or older than what is known
        if self.upto < published.after:
            self.read(read(self.upto, published.after, True), published.after)
        self.latest |= published.latest
        self.upto = published.upto

    def lost(self, tails: Mapping[int, int | None]) -> dict[int, int]:
        """The partitions whose last message is behind the latest event published there,
        each with the position of that last message (0 for an empty or missing partition)."""
        found = {partition: tails.get(partition) or 0 for partition in self.latest}
        return {
            partition: tail for partition, tail in found.items() if self.latest[partition] > tail
        }


@dataclass
class PublishedSince:
    """Where a relay's messages went since it resumed publishing after position ``after``:
    ``latest`` is the position of the latest message acknowledged in each partition of a
    topic of ``partitions`` partitions, among the events up to ``upto``. The relay keeps it
    as it publishes, so that a check need not read the store for what it published itself."""

    partitions: int
    after: int
    upto: int
    latest: dict[int, int] = field(default_factory=dict)

    def note(self, newest_first: Iterable[Placed], upto: int) -> None:
        """The events up to ``upto`` are published; ``newest_first`` places those since the
        last note, newest first, and is read only until every partition has met one (as
        ``ExpectedTails.read``): a batch costs a few placements, not one per message."""
        self.latest |= first_met(newest_first, self.partitions)
        self.upto = upto


def republish_position(
    expected: ExpectedTails, tails: Mapping[int, int | None], upto: int, read: PlacedReader
) -> int | None:
    """The position to republish after, when a partition's last message (``tails``) is
    behind the latest event published there up to ``upto``: just before the first event such
    a partition lost. None when no partition lost any."""
    expected.read(read(expected.upto, upto, True), upto)
    lost = expected.lost(tails)
    if not lost:
        return None
    since = min(lost.values())
    for position, partition in read(since, expected.upto, False):
        if partition is not None and partition in lost and position > lost[partition]:
            return position - 1
    return since
