"""The relay takes committed events from memory when they follow on without a gap, and from
the store otherwise: either way, every event once, in log order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from eventsourcing.domain import Aggregate, event

from contracts import Envelope
from services.shared.outbox import OutboxRelay
from services.shared.settings import Settings
from services.shared.store import ServiceApplication, store_environment


class Counter(Aggregate):
    def __init__(self) -> None:
        self.count = 0

    @event("Counted")
    def increment(self) -> None:
        self.count += 1


def relay_for(tmp_path: Path) -> tuple[ServiceApplication, OutboxRelay]:
    application = ServiceApplication(env=store_environment(Settings(data_dir=tmp_path)))
    relay = OutboxRelay(application, "goal.events", lambda event, position: None, {})
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


def test_a_tail_behind_only_internal_events_is_no_loss(tmp_path: Path) -> None:
    """The recorded position may end with events that have no message (internal ones): a
    topic whose tail stops before them lost nothing, and nothing is republished."""
    application = ServiceApplication(env=store_environment(Settings(data_dir=tmp_path)))
    published_at = {2}
    relay = OutboxRelay(
        application,
        "goal.events",
        lambda event, position: cast(Envelope, event) if position in published_at else None,
        {},
    )
    saved_events(application, 4)

    assert relay._publishes_between(2, 4) is False  # 3 and 4 are internal
    assert relay._publishes_between(1, 4) is True  # 2 has a message the topic lost
