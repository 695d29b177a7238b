"""Epochs of a service's log: every process writes in one of its own, so that a store restored
from a backup or rebuilt, which numbers new events from earlier positions again, has them
applied by consumers instead of taken for the events once published at those positions."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import ALIGNMENT_EVENTS, Envelope, ObjectiveScored, PaceStatus
from services.goal.application import GoalApplication
from services.goal.commands import ObjectiveCommand
from services.shared.consumer import TrackedConsumer, UnitOfWork
from services.shared.store import LogEpochs, ServiceApplication, store_environment
from tests.stores import Store, both_stores


def test_a_position_belongs_to_the_epoch_that_began_last_before_it() -> None:
    epochs = LogEpochs([(1, "a"), (40, "b"), (41, "c")])
    assert [epochs.at(p) for p in (1, 39, 40, 41, 500)] == ["a", "a", "b", "c", "c"]


def test_positions_before_any_epoch_belong_to_none() -> None:
    assert LogEpochs([(10, "a")]).at(9) == ""
    assert LogEpochs([]).at(1) == ""


def command(title: str) -> ObjectiveCommand:
    return ObjectiveCommand.model_validate(
        {
            "title": title,
            "owner": "ana",
            "org_unit": "sales",
            "level": "company",
            "period": "2026",
            "key_results": [{"title": "Win", "kind": "milestone"}],
        }
    )


def open_goal(store: Store, data_dir: Path) -> GoalApplication:
    return GoalApplication(env=store_environment(store.settings("goal", data_dir)))


@both_stores
def test_each_start_begins_an_epoch_where_the_next_event_goes(store: Store, tmp_path: Path) -> None:
    first = open_goal(store, tmp_path)
    first.create_objective(command("One"), actor="ana")
    first.create_objective(command("Two"), actor="ana")
    first.close()
    second = open_goal(store, tmp_path)
    try:
        starts = [first for first, _ in second.tracking_recorder.select_epochs()]
        assert starts == [1, second.max_position() + 1]
        epochs = second.log_epochs()
        assert epochs.at(2) == first.epoch
        assert epochs.at(3) == second.epoch != first.epoch
    finally:
        second.close()


def test_two_instances_at_the_same_head_share_the_first_ones_epoch(tmp_path: Path) -> None:
    store = Store("sqlite")
    first, second = open_goal(store, tmp_path), open_goal(store, tmp_path)
    try:
        assert first.tracking_recorder.select_epochs() == [(1, first.epoch)]
        assert second.log_epochs().at(1) == first.epoch
    finally:
        first.close()
        second.close()


def test_a_store_restored_from_a_backup_writes_in_a_new_epoch(tmp_path: Path) -> None:
    store = Store("sqlite")
    live = open_goal(store, tmp_path / "live")
    live.create_objective(command("Kept"), actor="ana")
    shutil.copytree(tmp_path / "live", tmp_path / "backup")
    live.create_objective(command("Lost with the live store"), actor="ana")
    lost_at = live.max_position()
    live.close()

    restored = open_goal(store, tmp_path / "backup")
    try:
        restored.create_objective(command("Written after the restore"), actor="ana")
        assert restored.max_position() == lost_at  # the same position again ...
        epochs = restored.log_epochs()
        assert epochs.at(lost_at) == restored.epoch != live.epoch  # ... in another epoch
        assert epochs.at(lost_at - 1) == live.epoch
    finally:
        restored.close()


# -- what a consumer makes of epochs ----------------------------------------------------------


@dataclass
class Record:
    """The parts of a Kafka record a consumer reads."""

    value: bytes | None
    topic: str = ALIGNMENT_EVENTS
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class Noting:
    """A policy that notes which events it was given."""

    applied: list[tuple[str, int]] = field(default_factory=list)

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        self.applied.append((event.epoch, event.position))

    def finish(self, unit: UnitOfWork) -> None:
        pass


def scored(position: int, epoch: str) -> Record:
    event = ObjectiveScored.model_validate(
        {
            "event_id": uuid.uuid4(),
            "position": position,
            "epoch": epoch,
            "aggregate_id": "objective-1",
            "aggregate_version": position,
            "occurred_at": datetime(2026, 3, 1, tzinfo=UTC),
            "actor": "alignment",
            "payload": {
                "objective_id": "objective-1",
                "score": 0.5,
                "expected": 0.2,
                "status": PaceStatus.on_track,
                "as_of": datetime(2026, 3, 1, tzinfo=UTC),
            },
        }
    )
    return Record(event.to_json())


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[tuple[TrackedConsumer, Noting]]:
    application = ServiceApplication(
        env=store_environment(Store("sqlite").settings("goal", tmp_path))
    )
    policy = Noting()
    yield TrackedConsumer(application, policy, dead_letters=None), policy  # type: ignore[arg-type]
    application.close()


def test_positions_are_applied_once_per_epoch(
    consumer: tuple[TrackedConsumer, Noting],
) -> None:
    tracked, policy = consumer
    asyncio.run(tracked.handle_batch([scored(1, "old"), scored(2, "old")]))
    # Republished copies of the old epoch, and a rebuilt producer's events at the same
    # positions in its new epoch.
    asyncio.run(tracked.handle_batch([scored(1, "old"), scored(1, "new"), scored(2, "new")]))
    asyncio.run(tracked.handle_batch([scored(2, "new"), scored(2, "old")]))
    assert policy.applied == [("old", 1), ("old", 2), ("new", 1), ("new", 2)]


def test_events_from_producers_without_epochs_are_tracked_as_before(
    consumer: tuple[TrackedConsumer, Noting],
) -> None:
    tracked, policy = consumer
    asyncio.run(tracked.handle_batch([scored(7, ""), scored(7, "")]))
    asyncio.run(tracked.handle_batch([scored(7, "")]))
    assert policy.applied == [("", 7)]
