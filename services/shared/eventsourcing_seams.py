"""Where the services depend on ``eventsourcing`` beyond its public interface: every override
or call of one of the library's private methods, and the repository's replay, is here and
nowhere else. Each relies on how the pinned version (pyproject.toml) works inside, as its
docstring says; ``tests/unit/test_eventsourcing_seams.py`` fails when an upgrade changes that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent, Repository
from eventsourcing.persistence import Recording


def project(aggregate: Any, domain_events: Iterable[Any]) -> Any:
    """Apply ``domain_events`` in turn: the library's ``project_aggregate`` without its
    runtime protocol check of every event, which costs as much as the replay itself."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class ReplayingRepository(Repository[UUID]):
    """The library's repository, replaying with ``project`` unless told otherwise.

    Relies on ``Repository.get`` taking these options by keyword, the projector as
    ``projector_func``: the library's own callers pass them so."""

    def get(
        self,
        aggregate_id: UUID,
        *,
        version: int | None = None,
        projector_func: Any = project,
        fastforward_skipping: bool = False,
        deepcopy_from_cache: bool = True,
    ) -> Any:
        return super().get(
            aggregate_id,
            version=version,
            projector_func=projector_func,
            fastforward_skipping=fastforward_skipping,
            deepcopy_from_cache=deepcopy_from_cache,
        )


class CommitHooks(Application[UUID]):
    """An application's commits as hooks: ``aggregates_committed`` and ``recorded``, and
    ``commit`` to store collected events as the library's ``save`` stores them.

    Relies on ``Application.save`` calling, for each commit, ``_record(processing_event)``
    (which stores the events and puts the aggregates in the repository's cache), then
    ``_take_snapshots(processing_event)``, then ``_notify(recordings)``; and on the library's
    ``_notify`` doing nothing of its own."""

    def commit(self, processing: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Store ``processing`` (its ``saved_kwargs`` go to the recorder), snapshot what is
        due and tell the hooks: ``save`` for events already collected."""
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def aggregates_committed(self, aggregates: Iterable[Any]) -> None:
        """Called with the aggregates of each commit, right after they are stored, where the
        library puts them in the repository's cache."""

    def recorded(self, recordings: list[Recording[UUID]]) -> None:
        """Called after each commit, in the committing thread, with what it stored."""

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        recordings = super()._record(processing_event)
        self.aggregates_committed(processing_event.aggregates.values())
        return recordings

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        self.recorded(recordings)

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshot from the aggregate in hand instead of replaying it from the store, as the
        library does: after a commit it is at the version just stored, and a long aggregate
        (a KPI with a long history of readings) would otherwise be read back at every
        snapshot. Relies on ``snapshots``, ``snapshotting_intervals`` and ``snapshot_class``
        meaning what the library's own ``_take_snapshots`` takes them to mean."""
        if self.snapshots is None or not self.snapshotting_intervals:
            return
        due = set()
        for event in processing_event.events:
            aggregate: Any = processing_event.aggregates.get(event.originator_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval is not None and event.originator_version % interval == 0:
                due.add(event.originator_id)
        for aggregate_id in due:
            aggregate = processing_event.aggregates[aggregate_id]
            snapshot_class: Any = getattr(type(aggregate), "Snapshot", self.snapshot_class)
            self.snapshots.put([snapshot_class.take(aggregate)])


def lock_events_table(recorder: Any, cursor: Any) -> None:
    """Take the PostgreSQL events table's write lock, as the library does before inserting
    events, so that positions commit in the order they are issued (readers of the log never
    pass a gap that fills later). Relies on ``PostgresApplicationRecorder._lock_table``."""
    recorder._lock_table(cursor)


def notify_log_readers(recorder: Any, cursor: Any) -> None:
    """Send the PostgreSQL notification the library sends when it inserts events, which its
    subscriptions wait on. Relies on ``PostgresApplicationRecorder._notify_channel``."""
    recorder._notify_channel(cursor)


def check_multi_row_tracking(recorder: Any, cursor: Any) -> None:
    """Refuse to write many tracking rows into a store made with single-row tracking, as the
    library checks before it writes tracking. Relies on the process recorders'
    ``_check_has_multi_row_tracking_table`` (SQLite and PostgreSQL alike)."""
    recorder._check_has_multi_row_tracking_table(cursor)
