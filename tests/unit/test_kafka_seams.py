"""What ``services.shared.kafka_seams`` relies on in ``aiokafka``: each test fails when an
upgrade of the library changes a private method the seams override, or what it does for them."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from aiokafka import errors
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.protocol.commit import OffsetCommitRequest

from services.shared import kafka_seams


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


def test_install_puts_the_seam_in_place_and_again_is_harmless() -> None:
    before = GroupCoordinator._do_commit_offsets
    try:
        kafka_seams.install()
        kafka_seams.install()
        assert GroupCoordinator._do_commit_offsets is kafka_seams._commit_as_a_member
    finally:
        GroupCoordinator._do_commit_offsets = before
