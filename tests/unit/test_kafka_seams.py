"""What ``services.shared.kafka_seams`` relies on in ``aiokafka`` and FastStream: each test
fails when an upgrade of either changes a private method the seams override, or what it does
for them."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiokafka.consumer.consumer
import pytest
from aiokafka import errors
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.structs import TopicPartition
from faststream.kafka.subscriber.usecase import BatchSubscriber, LogicSubscriber

from services.shared import kafka_seams, long_poll


def test_the_commit_the_seam_wraps_keeps_its_signature() -> None:
    parameters = inspect.signature(kafka_seams._library_commit).parameters
    assert list(parameters) == ["self", "assignment", "offsets"]


def test_the_library_builds_its_commit_request_from_the_generation_before_it_awaits() -> None:
    source = inspect.getsource(kafka_seams._library_commit)
    before_the_first_await = source.split("await", 1)[0]
    assert "self.generation" in before_the_first_await


def test_the_library_forgets_its_generation_when_it_must_rejoin() -> None:
    source = inspect.getsource(GroupCoordinator.reset_generation)
    assert "self.generation = OffsetCommitRequest.DEFAULT_GENERATION_ID" in source


def test_the_library_fails_a_commit_refused_for_its_generation_without_retrying() -> None:
    source = inspect.getsource(GroupCoordinator.commit_offsets)
    assert "Errors.IllegalGenerationError" in source
    assert "raise Errors.CommitFailedError" in source


class Coordinator:
    """What the seam reads of a group coordinator (made in a running loop, as the library's
    subscription state must be)."""

    def __init__(self, generation: int, auto_assigned: bool) -> None:
        self.generation = generation
        self.group_id = "okr-metrics"
        self._subscription = SubscriptionState()
        if auto_assigned:
            self._subscription.subscribe(topics={"kpi.readings"})
        else:
            self._subscription.assign_from_user([])


def commit(generation: int, auto_assigned: bool = True) -> None:
    async def as_the_library_would() -> None:
        coordinator = Coordinator(generation, auto_assigned)
        await kafka_seams._commit_as_a_member(coordinator, None, {})

    asyncio.run(as_the_library_would())


@pytest.fixture
def library_commit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Stands in for the library's commit: records the generation it would send."""
    sent: list[int] = []

    async def send(self: Any, assignment: Any, offsets: Any) -> None:
        sent.append(self.generation)

    monkeypatch.setattr(kafka_seams, "_library_commit", send)
    return sent


def test_a_member_without_a_generation_does_not_commit(library_commit: list[int]) -> None:
    with pytest.raises(errors.IllegalGenerationError, match="okr-metrics"):
        commit(OffsetCommitRequest.DEFAULT_GENERATION_ID)
    assert library_commit == []


def test_a_member_commits_in_its_generation(library_commit: list[int]) -> None:
    commit(3)
    assert library_commit == [3]


def test_a_consumer_outside_group_management_commits_without_a_generation(
    library_commit: list[int],
) -> None:
    commit(OffsetCommitRequest.DEFAULT_GENERATION_ID, auto_assigned=False)
    assert library_commit == [OffsetCommitRequest.DEFAULT_GENERATION_ID]


def test_install_puts_the_seams_in_place_and_again_is_harmless() -> None:
    commit, fetcher = GroupCoordinator._do_commit_offsets, aiokafka.consumer.consumer.Fetcher
    poll = BatchSubscriber.get_msg
    try:
        kafka_seams.install()
        kafka_seams.install()
        assert GroupCoordinator._do_commit_offsets is kafka_seams._commit_as_a_member
        assert aiokafka.consumer.consumer.Fetcher is kafka_seams._AdaptiveFetcher
        assert BatchSubscriber.get_msg is kafka_seams._poll_without_pause
    finally:
        GroupCoordinator._do_commit_offsets = commit
        aiokafka.consumer.consumer.Fetcher = fetcher
        BatchSubscriber.get_msg = poll  # type: ignore[method-assign]


def test_the_library_builds_each_fetch_from_its_two_settings() -> None:
    source = inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms" in source
    assert "self._fetch_min_bytes" in source
    assert "self._fetch_min_bytes = fetch_min_bytes" in inspect.getsource(Fetcher.__init__)


def test_the_consumer_makes_its_fetcher_from_the_module_name_the_seam_replaces() -> None:
    assert "Fetcher(" in inspect.getsource(aiokafka.consumer.consumer.AIOKafkaConsumer)
    assert aiokafka.consumer.consumer.Fetcher in (Fetcher, kafka_seams._AdaptiveFetcher)


@pytest.fixture
def fetcher(monkeypatch: pytest.MonkeyPatch) -> tuple[kafka_seams._AdaptiveFetcher, list[bool]]:
    """A fetcher configured for 256 KiB within 50 ms, whose fetches find what the list says."""
    outcomes: list[bool] = []

    async def fetch(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        return outcomes.pop(0)

    monkeypatch.setattr(Fetcher, "__init__", lambda self, **options: setattr_all(self, options))
    monkeypatch.setattr(Fetcher, "_proc_fetch_request", fetch)
    made = kafka_seams._AdaptiveFetcher(fetch_min_bytes=256 * 1024, fetch_max_wait_ms=50)
    return made, outcomes


def setattr_all(fetcher: Any, options: dict[str, int]) -> None:
    for name, value in options.items():
        setattr(fetcher, f"_{name}", value)


def settings(fetcher: Any) -> tuple[int, int]:
    return fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms


def fetch(fetcher: Any) -> bool:
    found: bool = asyncio.run(fetcher._proc_fetch_request(None, 1, None))
    return found


def test_fetches_gather_batches_while_records_come(
    fetcher: tuple[kafka_seams._AdaptiveFetcher, list[bool]],
) -> None:
    made, outcomes = fetcher
    assert settings(made) == (256 * 1024, 50)
    outcomes += [True, True]
    assert fetch(made)
    assert fetch(made)
    assert settings(made) == (256 * 1024, 50)


def test_an_idle_fetch_waits_long_for_the_first_record(
    fetcher: tuple[kafka_seams._AdaptiveFetcher, list[bool]],
) -> None:
    made, outcomes = fetcher
    outcomes += [False]
    assert not fetch(made)
    assert settings(made) == (1, kafka_seams.IDLE_FETCH_WAIT_MS)
    outcomes += [True]
    assert fetch(made)
    assert settings(made) == (256 * 1024, 50)


def test_the_library_closing_a_fetcher_awaits_the_fetches_it_cancels() -> None:
    source = inspect.getsource(Fetcher.close)
    assert "for x in self._pending_tasks:" in source
    assert source.index("self._fetch_task.cancel()") < source.index("self._pending_tasks")


@pytest.mark.parametrize(
    "kind", [kafka_seams._AdaptiveFetcher, long_poll._PatientFetcher], ids=["kafka", "noida-db"]
)
def test_closing_a_fetcher_with_fetches_in_flight_lets_them_go_without_raising(
    kind: type[kafka_seams.QuietlyClosingFetcher],
) -> None:
    """As when a consumer stops while its fetches retry against a broker that went away: the
    library's close raised their CancelledError out of ``consumer.stop()``."""

    async def scenario() -> list[bool]:
        made = kind.__new__(kind)
        made._closed = False
        made._fetch_waiters = set()
        made._fetch_task = asyncio.create_task(asyncio.sleep(3600))
        retrying = asyncio.create_task(asyncio.sleep(3600))  # a fetch in its back-off
        made._pending_tasks = {retrying}
        await asyncio.sleep(0)  # both under way
        await made.close()
        return [made._fetch_task.cancelled(), retrying.cancelled()]

    assert asyncio.run(scenario()) == [True, True]


# -- the batch subscriber's poll ---------------------------------------------------------------


def test_the_subscribers_consume_loop_polls_with_get_msg() -> None:
    assert "await self.get_msg(consumer)" in inspect.getsource(LogicSubscriber._run_consume_loop)


def test_the_library_polls_getmany_with_the_subscribers_settings_and_pauses_when_empty() -> None:
    source = inspect.getsource(kafka_seams._library_poll)
    assert "consumer.getmany(" in source
    assert "timeout_ms=self.batch_timeout_ms" in source
    assert "max_records=self.max_records" in source
    # The pause the seam removes: when FastStream drops it, so can the seam.
    assert "sleep(self.batch_timeout_ms" in source


def test_getmany_comes_back_empty_only_when_its_time_ran_out_or_it_was_stopped() -> None:
    source = inspect.getsource(Fetcher.fetched_records)
    assert "if drained or not timeout:" in source  # at once only when asked not to wait
    assert "asyncio.wait([waiter], timeout=timeout)" in source
    assert "if not done or self._closed:" in source


class Polled:
    """A consumer whose ``getmany`` hands over ``batches`` and notes how it was asked."""

    def __init__(self, batches: dict[TopicPartition, list[str]]) -> None:
        self.batches = batches
        self.asked: list[dict[str, Any]] = []

    async def getmany(self, **options: Any) -> dict[TopicPartition, list[str]]:
        self.asked.append(options)
        return self.batches


class Subscriber:
    batch_timeout_ms = kafka_seams.BATCH_POLL_MS
    max_records = 500


def poll(consumer: Polled) -> tuple[Any, ...]:
    return asyncio.run(kafka_seams._poll_without_pause(Subscriber(), consumer))


def test_a_poll_hands_over_every_partitions_records_in_one_batch() -> None:
    consumer = Polled(
        {
            TopicPartition("metrics.events", 0): ["a", "b"],
            TopicPartition("metrics.events", 3): ["c"],
        }
    )
    assert poll(consumer) == ("a", "b", "c")
    assert consumer.asked == [{"timeout_ms": kafka_seams.BATCH_POLL_MS, "max_records": 500}]


def test_an_empty_poll_comes_back_without_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    async def pause(*args: Any) -> None:
        raise AssertionError("paused after an empty poll")

    monkeypatch.setattr(asyncio, "sleep", pause)
    monkeypatch.setattr("anyio.sleep", pause)
    assert poll(Polled({})) == ()
