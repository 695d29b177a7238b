"""What ``services.shared.eventsourcing_seams`` relies on in ``eventsourcing``: each test fails
when an upgrade of the library changes a private method the seams override or call, or what
it does for them."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.application import Application, ProcessingEvent, Repository
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Recording, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder

from services.shared.eventsourcing_seams import (
    CommitHooks,
    ReplayingRepository,
    lock_events_table,
    notify_log_readers,
    project,
)
from services.shared.store import ServiceApplication, store_environment
from tests.stores import Store, both_stores


class Counter(Aggregate):
    def __init__(self) -> None:
        self.count = 0

    @event("Counted")
    def count_one(self) -> None:
        self.count += 1


def parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
KEYWORD = inspect.Parameter.KEYWORD_ONLY


def test_the_private_methods_of_a_commit_keep_their_signatures() -> None:
    assert parameters(Application._record) == [
        ("self", POSITIONAL),
        ("processing_event", POSITIONAL),
    ]
    assert parameters(Application._take_snapshots) == [
        ("self", POSITIONAL),
        ("processing_event", POSITIONAL),
    ]
    assert parameters(Application._notify) == [("self", POSITIONAL), ("recordings", POSITIONAL)]


class Witness(Application[UUID]):
    """Notes what the library's ``save`` calls, in order."""

    calls: ClassVar[list[tuple[str, Any]]] = []

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        recordings = super()._record(processing_event)
        self.calls.append(("record", processing_event))
        return recordings

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        self.calls.append(("snapshots", processing_event))

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        self.calls.append(("notify", recordings))


def test_save_records_then_snapshots_then_notifies_with_what_it_recorded() -> None:
    application = Witness()
    Witness.calls.clear()
    counter = Counter()
    recordings = application.save(counter)
    steps = [step for step, _ in Witness.calls]
    assert steps == ["record", "snapshots", "notify"]
    processing = Witness.calls[0][1]
    assert Witness.calls[1][1] is processing
    assert processing.aggregates == {counter.id: counter}
    assert Witness.calls[2][1] == recordings


def test_the_librarys_notify_does_nothing_of_its_own() -> None:
    body = inspect.getsource(Application._notify).split('"""')[-1]
    assert body.strip() == ""


class Hooked(CommitHooks):
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "10",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
    }
    snapshotting_intervals: ClassVar[dict[Any, int]] = {Counter: 2}

    def __init__(self) -> None:
        super().__init__()
        self.cached_when_committed: list[bool] = []
        self.heard: list[list[Recording[UUID]]] = []

    def aggregates_committed(self, aggregates: Iterable[Any]) -> None:
        assert self.repository.cache is not None
        self.cached_when_committed += [
            self.repository.cache.get(aggregate.id) is aggregate for aggregate in aggregates
        ]

    def recorded(self, recordings: list[Recording[UUID]]) -> None:
        self.heard.append(recordings)


def test_committed_aggregates_are_in_the_cache_when_the_hook_hears_of_them() -> None:
    application = Hooked()
    counter = Counter()
    recordings = application.save(counter)
    assert application.cached_when_committed == [True]
    assert application.heard == [recordings]


def test_commit_stores_collected_events_as_save_does() -> None:
    application = Hooked()
    counter = Counter()
    processing: ProcessingEvent[UUID] = ProcessingEvent()
    processing.collect_events(counter)
    recordings = application.commit(processing)
    assert [r.domain_event.originator_id for r in recordings] == [counter.id]
    assert application.heard == [recordings]
    assert application.repository.get(counter.id).count == 0


def test_snapshots_from_the_aggregate_in_hand_are_the_librarys_snapshots() -> None:
    application = Hooked()
    counter = Counter()
    counter.count_one()
    application.save(counter)  # version 2: a snapshot is due
    assert application.snapshots is not None
    ours: list[Any] = list(application.snapshots.get(counter.id))
    assert [s.originator_version for s in ours] == [2]
    library = Application[UUID](env={"IS_SNAPSHOTTING_ENABLED": "y"})
    library.events.put(list(application.events.get(counter.id)))
    library.take_snapshot(counter.id)
    assert library.snapshots is not None
    theirs: Any
    (theirs,) = library.snapshots.get(counter.id)
    assert (ours[0].topic, ours[0].state) == (theirs.topic, theirs.state)


def test_the_repository_takes_its_options_by_keyword() -> None:
    assert parameters(Repository.get) == [
        ("self", POSITIONAL),
        ("aggregate_id", POSITIONAL),
        ("version", KEYWORD),
        ("projector_func", KEYWORD),
        ("fastforward_skipping", KEYWORD),
        ("deepcopy_from_cache", KEYWORD),
    ]


def test_the_repository_replays_with_project() -> None:
    application = Application[UUID]()
    counter = Counter()
    counter.count_one()
    counter.count_one()
    application.save(counter)
    replayed: list[Any] = []

    def witness(aggregate: Any, domain_events: Iterable[Any]) -> Any:
        events = list(domain_events)
        replayed.extend(events)
        return project(aggregate, events)

    repository = ReplayingRepository(event_store=application.repository.event_store)
    assert repository.get(counter.id).count == 2
    assert repository.get(counter.id, projector_func=witness).count == 2
    assert [e.originator_version for e in replayed] == [1, 2, 3]
    assert repository.get(counter.id, version=2).count == 1


def test_the_recorders_private_methods_the_seams_call_keep_their_signatures() -> None:
    assert parameters(PostgresApplicationRecorder._lock_table) == [
        ("self", POSITIONAL),
        ("curs", POSITIONAL),
    ]
    assert parameters(PostgresApplicationRecorder._notify_channel) == [
        ("self", POSITIONAL),
        ("curs", POSITIONAL),
    ]
    assert parameters(PostgresProcessRecorder._check_has_multi_row_tracking_table) == [
        ("self", POSITIONAL),
        ("c", POSITIONAL),
    ]
    assert parameters(SQLiteProcessRecorder._check_has_multi_row_tracking_table) == [
        ("self", POSITIONAL),
        ("c", POSITIONAL),
    ]


@both_stores
def test_many_tracking_rows_commit_with_their_events(store: Store, tmp_path: Path) -> None:
    application = ServiceApplication(env=store_environment(store.settings("goal", tmp_path)))
    try:
        counter = Counter()
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        processing.collect_events(counter)
        trackings = [Tracking("upstream", 7), Tracking("upstream", 3)]
        application.record_batch(processing, trackings)
        recorder = application.tracking_recorder
        assert recorder.has_checked_for_multi_row_tracking_table  # type: ignore[attr-defined]
        assert recorder.select_tracked("upstream", [3, 5, 7]) == {3, 7}
        assert application.max_position() == 1
    finally:
        application.close()


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_postgres_writers_hold_the_events_table_lock(store: Store, tmp_path: Path) -> None:
    application = ServiceApplication(env=store_environment(store.settings("goal", tmp_path)))
    try:
        recorder: Any = application.recorder
        assert recorder.lock_table_statements
        assert recorder.channel_name
        with recorder.datastore.transaction(commit=False) as curs:
            lock_events_table(recorder, curs)
            notify_log_readers(recorder, curs)
            curs.execute(
                "SELECT mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = %s AND l.pid = pg_backend_pid()",
                [recorder.events_table_name.split(".")[-1]],
            )
            assert "ExclusiveLock" in {row["mode"] for row in curs.fetchall()}
    finally:
        application.close()
