"""The relay takes committed events from memory when they follow on without a gap, and from
the store otherwise: either way, every event once, in log order. Its tail check finds, partition
by partition, where to republish from when the topic lost messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.structs import RecordMetadata
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import ObjectiveSet
from services.shared import outbox, outbox_checks
from services.shared.integration_events import Message, Publication, encode_messages
from services.shared.outbox import OutboxRelay, send_batches
from services.shared.outbox_checks import (
    ExpectedTails,
    PublishedSince,
    partition_of,
    republish_position,
)
from services.shared.settings import Settings
from services.shared.store import ServiceApplication, store_environment
from tests.unit.test_contracts import EXAMPLES


class Counter(Aggregate):
    def __init__(self) -> None:
        self.count = 0

    @event("Counted")
    def increment(self) -> None:
        self.count += 1


def relay_for(tmp_path: Path) -> tuple[ServiceApplication, OutboxRelay]:
    application = ServiceApplication(env=store_environment(Settings(data_dir=tmp_path)))
    relay = OutboxRelay(application, "goal.events", lambda event, *_: None, {})
    application.on_recorded(relay.wake_up)  # as ``run`` does
    return application, relay


def saved_events(application: ServiceApplication, count: int) -> list[Any]:
    counter = Counter()
    for _ in range(count - 1):
        counter.increment()
    events = list(counter.collect_events())
    application.save(*events)
    return events


def test_committed_events_come_from_memory_in_log_order(tmp_path: Path) -> None:
    application, relay = relay_for(tmp_path)
    events = saved_events(application, 3)

    taken = relay._next_events()

    assert [position for position, _ in taken] == [1, 2, 3]
    assert all(held is event for (_, held), event in zip(taken, events, strict=True))


def test_after_a_gap_the_store_answers(tmp_path: Path) -> None:
    application, relay = relay_for(tmp_path)
    saved_events(application, 3)
    relay._committed.clear()  # as after a restart: nothing heard
    saved_events(application, 2)  # heard: positions 4 and 5, not following position 0

    taken = relay._next_events()

    assert [position for position, _ in taken] == [1, 2, 3, 4, 5]
    relay.position = 5
    assert relay._next_events() == []
    assert not relay._committed, "what the store already gave is dropped from memory"


#: Three partitions, as every event topic has: an aggregate id whose messages go to each.
PARTITIONS = 3
KEYS = {partition_of(key.encode(), PARTITIONS): key for key in map("aggregate-{}".format, range(9))}


@dataclass
class Acknowledged:
    """What the relay reads of the broker's acknowledgement of a message."""

    partition: int
    offset: int


def stored_log(
    tmp_path: Path, placement: list[int | None], translated: list[int] | None = None
) -> OutboxRelay:
    """A relay over a log whose event at position n + 1 has its message in partition
    ``placement[n]`` (None: an internal event), read from the store a page of two at a time;
    the positions of the events it translates are added to ``translated``."""
    application = ServiceApplication(env=store_environment(Settings(data_dir=tmp_path)))
    saved_events(application, len(placement))

    def translate(event: Any, position: int, epoch: str = "") -> Publication | None:
        if translated is not None:
            translated.append(position)
        partition = placement[position - 1]
        if partition is None:
            return None
        # The tail check reads a publication's key only.
        return Publication(ObjectiveSet, KEYS[partition].encode(), b"{}")

    return OutboxRelay(application, "goal.events", translate, {}, batch_size=2)


def test_tails_that_hold_every_partitions_latest_event_lost_nothing(tmp_path: Path) -> None:
    tails: dict[int, int | None] = {0: 4, 1: 5, 2: 3}

    relay = stored_log(tmp_path / "recorded", [0, 1, 2, 0, 1])
    assert relay._republish_position(tails, upto=5) is None

    # Published beyond the record (the relay stopped before recording it): nothing lost.
    relay = stored_log(tmp_path / "beyond", [0, 1, 2, 0, 1])
    assert relay._republish_position(tails, upto=3) is None


def test_a_partition_that_lost_its_tail_is_found_though_another_is_ahead(
    tmp_path: Path,
) -> None:
    """Partition 1 lost 4 and 6; partition 0 still ends with 5, past partition 1's tail: the
    highest tail of all says nothing, partition 1's own tail does."""
    relay = stored_log(tmp_path, [0, 1, 2, 1, 0, 1])

    assert relay._republish_position({0: 5, 1: 2, 2: 3}, upto=6) == 3


def test_an_empty_partition_that_should_hold_an_event_lost_it(tmp_path: Path) -> None:
    relay = stored_log(tmp_path, [0, 1, 2, 0, 1])

    assert relay._republish_position({0: 4, 1: 5, 2: None}, upto=5) == 2


def test_internal_events_have_no_message_to_lose(tmp_path: Path) -> None:
    """Nothing is missing when the log ends with internal events the topic never held, and a
    partition's first lost event is found past the internal events after its tail."""
    relay = stored_log(tmp_path, [0, 1, 2, None, None, 1, None])

    assert relay._republish_position({0: 1, 1: 2, 2: 3}, upto=5) is None
    assert relay._republish_position({0: 1, 1: 2, 2: 3}, upto=7) == 5


def test_nothing_published_yet_lost_nothing(tmp_path: Path) -> None:
    relay = stored_log(tmp_path, [0, 1, 2])

    assert relay._republish_position({0: None, 1: None, 2: None}, upto=0) is None


def test_a_missing_topic_lost_every_message(tmp_path: Path) -> None:
    relay = stored_log(tmp_path, [None, 2, 0])

    assert relay._republish_position({}, upto=3) == 1


def test_the_check_reads_only_what_it_needs() -> None:
    """Newest first until every partition has met its latest event, then, on the next
    check, only the events stored since."""
    placement: dict[int, int | None] = {1: 0, 2: 1, 3: 2, 4: None, 5: 0, 6: 1, 7: 2, 8: 2}
    read_positions: list[int] = []

    def read(after: int, upto: int, newest_first: bool) -> Iterator[tuple[int, int | None]]:
        positions = range(after + 1, upto + 1)
        for position in reversed(positions) if newest_first else positions:
            read_positions.append(position)
            yield position, placement[position]

    expected = ExpectedTails(PARTITIONS)
    tails: dict[int, int | None] = {0: 5, 1: 6, 2: 8}

    assert republish_position(expected, tails, 7, read) is None
    assert read_positions == [7, 6, 5]

    read_positions.clear()
    assert republish_position(expected, tails, 8, read) is None
    assert read_positions == [8]
    assert expected == ExpectedTails(PARTITIONS, upto=8, latest={0: 5, 1: 6, 2: 8})


@settings(max_examples=200, deadline=None)
@given(
    placement=st.lists(st.sampled_from([0, 1, 2, None]), min_size=1, max_size=30),
    cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    tails=st.lists(st.integers(0, 30) | st.none(), min_size=PARTITIONS, max_size=PARTITIONS),
)
def test_what_the_relay_published_places_its_events_as_the_store_does(
    placement: list[int | None], cuts: tuple[float, float], tails: list[int | None]
) -> None:
    """A check given what the relay published since it resumed (``PublishedSince``) answers as
    one that places every stored event, and reads the store only up to the resume."""
    upto = len(placement)
    resumed, checked_before = (int(cut * upto) for cut in cuts)
    read_positions: list[int] = []

    def read(after: int, upto: int, newest_first: bool) -> Iterator[tuple[int, int | None]]:
        positions = range(after + 1, upto + 1)
        for position in reversed(positions) if newest_first else positions:
            read_positions.append(position)
            yield position, placement[position - 1]

    ends = {partition: min(tail, upto) if tail else tail for partition, tail in enumerate(tails)}
    answer = republish_position(ExpectedTails(PARTITIONS), ends, upto, read)

    expected = ExpectedTails(PARTITIONS)  # as kept by an earlier check, before this one
    republish_position(expected, ends, checked_before, read)
    published = PublishedSince(PARTITIONS, resumed, resumed)
    published.note(
        (
            (position, placement[position - 1])
            for position in reversed(range(resumed + 1, upto + 1))
        ),
        upto,
    )
    read_positions.clear()
    expected.catch_up(published, read)
    assert all(position <= max(resumed, checked_before) for position in read_positions)
    assert republish_position(expected, ends, upto, read) == answer


async def test_a_check_reads_the_store_only_for_the_events_before_the_relay_resumed(
    tmp_path: Path,
) -> None:
    """The relay keeps where it published each message since it resumed; a check while it
    publishes places no such event again (placing one decodes and translates it), and still
    finds a partition that lost its tail."""
    placement: list[int | None] = [0, 1, 2, 0, None, 1, 0, 0, 0, 0]
    translated: list[int] = []
    relay = stored_log(tmp_path / "kept", placement, translated)
    relay.position = 4
    relay._published = PublishedSince(0, 4, 4)  # as ``run`` starts it after resuming at 4
    producer = cast(Any, BatchingProducer())
    positioned: list[tuple[int, Message]] = [
        (position, (KEYS[partition].encode(), b"{}", []))
        for position, partition in enumerate(placement, start=1)
        if position > 4 and partition is not None
    ]
    for upto in (7, 10):  # two batches
        await relay._note_published(producer, [p for p in positioned if p[0] <= upto], upto)
        relay._reached(upto)
    assert relay._published.latest == {0: 10, 1: 6}, "each partition's latest message"

    assert relay._republish_position({0: 10, 1: 6, 2: 3}, 10, relay._published) is None
    assert set(translated) <= {1, 2, 3, 4}
    assert relay._republish_position({0: 10, 1: 2, 2: 3}, 10, relay._published) == 5
    reference = stored_log(tmp_path / "read", placement)
    assert reference._republish_position({0: 10, 1: 2, 2: 3}, 10) == 5


async def test_an_idle_relay_checks_the_tails_when_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check an idle relay makes finds where to republish from, and the resume that
    follows (with a new producer) starts there without looking again."""
    relay = stored_log(tmp_path, [0, 1, 2])
    relay._application.tracking_recorder.insert_tracking(Tracking(relay._tracking_name, 3))
    relay.position = 3
    looked: list[str] = []

    async def tails(client_options: dict[str, Any], topic: str) -> dict[int, int | None]:
        looked.append(topic)
        return {0: 1, 1: None, 2: 3}

    monkeypatch.setattr(outbox_checks, "published_tails", tails)

    relay._tail_check_due = time.monotonic() + 60
    assert relay._tail_lost(idle=True) is False
    assert relay._tail_check is None, "not due yet"

    relay._tail_check_due = time.monotonic()
    assert relay._tail_lost(idle=False) is False
    assert relay._tail_check is None, "a busy relay checks later"
    assert relay._tail_lost(idle=True) is False
    assert relay._tail_check is not None
    await relay._tail_check
    assert relay._tail_lost(idle=False) is True
    assert await relay._resume_position() == 1
    assert looked == ["goal.events"]


async def test_a_tail_check_holds_no_publishing_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check reads the topic for a while; the relay goes on meanwhile, and finds what the
    check found once it is done."""
    relay = stored_log(tmp_path, [0, 1, 2])
    relay.position = 3
    answer = asyncio.Event()

    async def tails(client_options: dict[str, Any], topic: str) -> dict[int, int | None]:
        await answer.wait()  # the broker is slow to answer
        return {0: 1, 1: 2, 2: 3}

    async def beginnings_whole(*_: Any) -> list[int]:
        return []

    monkeypatch.setattr(outbox_checks, "published_tails", tails)
    monkeypatch.setattr(outbox_checks, "beginnings_lost", beginnings_whole)
    relay._tail_check_due = time.monotonic()
    assert relay._tail_lost(idle=True) is False
    check = relay._tail_check
    assert check is not None
    assert relay._tail_lost(idle=False) is False, "no answer yet: publishing goes on"
    answer.set()
    await check
    assert relay._tail_lost(idle=False) is False, "nothing lost"
    assert relay._tail_check is None


async def test_a_republish_that_failed_midway_starts_over_until_it_got_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker lost everything and took newer messages since: the topic's tails look
    whole. A republish that fails before it gets through must not be forgotten."""
    relay = stored_log(tmp_path, [0, 1, 2, 0, 1, 2])
    relay._application.tracking_recorder.insert_tracking(Tracking(relay._tracking_name, 6))
    relay.position = 6
    relay._offsets = {0: 5}

    async def whole(client_options: dict[str, Any], topic: str) -> dict[int, int | None]:
        return {0: 4, 1: 5, 2: 6}

    async def beginnings_whole(*_: Any) -> list[int]:
        return []

    monkeypatch.setattr(outbox_checks, "published_tails", whole)
    monkeypatch.setattr(outbox_checks, "beginnings_lost", beginnings_whole)
    with pytest.raises(outbox.BrokerLostData):
        relay._check_offsets([(cast(RecordMetadata, Acknowledged(partition=0, offset=0)), 1)])

    assert await relay._resume_position() == 0
    relay._reached(3)  # republished up to here, then the producer failed
    assert await relay._resume_position() == 0, "the republish is not done"
    relay._reached(6)
    assert await relay._resume_position() == 6, "got through: the topic is checked again"


async def test_a_cancellation_that_is_not_the_relays_fails_one_round_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library may let a CancelledError of its own out (aiokafka's ``consumer.stop()`` did,
    in the tail check): the relay must not take it for its own and end; asked to stop, it
    does."""
    _, relay = relay_for(tmp_path)
    rounds = 0
    second_round = asyncio.Event()

    async def keep_lease(lease: Any) -> Any:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise asyncio.CancelledError  # let out by a library
        second_round.set()
        await asyncio.Event().wait()  # leads until the service stops it

    monkeypatch.setattr(relay, "_keep_lease", keep_lease)
    running = asyncio.create_task(relay.run())
    await asyncio.wait_for(second_round.wait(), 10)
    assert rounds == 2
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


def test_each_message_has_headers_of_its_own_that_aiokafka_takes() -> None:
    event = EXAMPLES["KPIRecorded"]
    [(_, _, first), (_, _, second)] = encode_messages(
        [(1, event), (2, event)], lambda e, *_: Publication(type(e), e.key(), e.to_json())
    )
    assert (
        first
        == second
        == [
            ("event_type", b"KPIRecorded"),
            ("schema_version", b"1"),
            ("producer", b"metrics"),
            ("content-type", b"application/json"),
        ]
    )
    assert first is not second, "a sender changing one message's headers changes no other's"
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 16,
    )
    assert builder.append(0, timestamp=None, key=b"k", value=b"v", headers=first) is not None


class BatchingProducer:
    """Takes the relay's record batches as aiokafka's producer does, small enough that three
    messages fill one, and acknowledges each batch with the next offsets of its partition."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, list[tuple[bytes | None, bytes | None]]]] = []
        self.ends: dict[int, int] = {}

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(batch_size=300, compression_type=0)  # three of the test's messages fit

    async def send_batch(
        self, batch: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[Acknowledged]:
        records = [(record.key, record.value) for record in DefaultRecordBatch(batch._build())]
        self.sent.append((partition, records))
        first = self.ends.get(partition, 0)
        self.ends[partition] = first + len(records)
        acknowledged = asyncio.get_running_loop().create_future()
        acknowledged.set_result(Acknowledged(partition, first))
        return acknowledged


async def test_messages_go_in_batches_per_partition_each_in_log_order(tmp_path: Path) -> None:
    _, relay = relay_for(tmp_path)
    producer = BatchingProducer()
    messages = [
        (KEYS[partition].encode(), f"message {n:02d}".encode() + bytes(40), [("n", b"%d" % n)])
        for n, partition in enumerate([0, 1, 0, 0, 2, 0, 1, 0])
    ]

    acknowledged = await send_batches(cast(Any, producer), "goal.events", messages)

    by_partition: dict[int, list[bytes | None]] = {}
    for partition, records in producer.sent:
        assert 1 <= len(records) <= 3, "a full batch is sent and a new one begun"
        by_partition.setdefault(partition, []).extend(value for _, value in records)
    for partition in range(PARTITIONS):
        expected = [
            value for key, value, _ in messages if partition_of(key, PARTITIONS) == partition
        ]
        assert by_partition.get(partition, []) == expected
    assert len(producer.sent) == 4, "partition 0's five messages take two batches"
    assert [count for _, count in acknowledged] == [len(records) for _, records in producer.sent]
    relay._check_offsets(acknowledged)
    assert relay._offsets == {partition: end - 1 for partition, end in producer.ends.items()}
    assert await send_batches(cast(Any, producer), "goal.events", []) == []
