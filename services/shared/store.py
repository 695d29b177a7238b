"""The event store of a service: an ``eventsourcing`` application whose recorder also keeps
tracking records, so that consumed messages and the events they cause commit together.

The adapter (SQLite or PostgreSQL) is chosen by configuration, as ``eventsourcing`` does it:
``store_environment`` turns ``Settings`` into the library's environment variables.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import JSONTranscoder, Recording, Tracking, Transcoding
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder
from pydantic import BaseModel

from services.shared.audit import GENESIS, StoredLink, link
from services.shared.settings import Settings
from services.shared.telemetry import EVENTS_APPENDED, STORE_HEAD

OUTBOX_TRACKING_PREFIX = "outbox:"


class BatchTrackingSQLiteRecorder(SQLiteProcessRecorder):
    """A process recorder that records what was consumed in the same transaction as the
    events it caused, for whole batches at once.

    - ``trackings=[...]``: one tracking row per (producer, position), so positions may arrive
      in any order across partitions (``eventsourcing`` itself takes one per transaction).
    - ``idempotency_keys=[(scope, key), ...]``: for inputs that have no producer position,
      such as KPI readings from outside systems, whose reading id is the idempotency key.
    """

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS idempotency_keys ("
            "scope TEXT, key TEXT, PRIMARY KEY (scope, key)) WITHOUT ROWID",
            # The tamper-evident chain: one link per stored event, by its position.
            "CREATE TABLE IF NOT EXISTS audit_chain (position INTEGER PRIMARY KEY, hash TEXT)",
        ]

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[Any], **kwargs: Any) -> Any:
        returning = self._insert_rows(c, stored_events)
        single = kwargs.get("tracking")
        for tracking in [single] if single else kwargs.get("trackings", ()):
            self._insert_tracking(c, tracking)
        keys = kwargs.get("idempotency_keys")
        if keys:
            c.executemany("INSERT INTO idempotency_keys VALUES (?, ?)", keys)
        return returning

    def _insert_rows(self, c: SQLiteCursor, stored_events: Sequence[Any]) -> list[int]:
        """Insert events with one multi-row statement per chunk instead of one statement per
        event (the library's way): the hot path of ingestion. New rows take rowids (the
        notification ids) in insertion order, so the sorted returned ids match the events."""
        ids: list[int] = []
        for start in range(0, len(stored_events), 2000):  # 4 parameters each, below 32766
            chunk = stored_events[start : start + 2000]
            values = [
                field
                for event in chunk
                for field in (
                    event.originator_id.hex
                    if isinstance(event.originator_id, UUID)
                    else event.originator_id,
                    event.originator_version,
                    event.topic,
                    event.state,
                )
            ]
            rows = ",".join("(?,?,?,?)" for _ in chunk)
            c.execute(f"INSERT INTO {self.events_table_name} VALUES {rows} RETURNING rowid", values)
            ids += sorted(row[0] for row in c.fetchall())
        self._chain(c, stored_events, ids)
        return ids

    def _chain(self, c: SQLiteCursor, stored_events: Sequence[Any], ids: list[int]) -> None:
        """Link the new events to the chain, in the transaction that stores them."""
        c.execute("SELECT hash FROM audit_chain ORDER BY position DESC LIMIT 1")
        last = c.fetchone()
        previous = last[0] if last else GENESIS
        links = []
        for event, position in zip(stored_events, ids, strict=True):
            originator = (
                event.originator_id.hex
                if isinstance(event.originator_id, UUID)
                else str(event.originator_id)
            )
            previous = link(
                previous, originator, event.originator_version, event.topic, event.state
            )
            links.append((position, previous))
        c.executemany("INSERT INTO audit_chain VALUES (?, ?)", links)

    def select_links(self) -> list[StoredLink]:
        """Every stored event joined with its link, in position order, either side missing
        where the other is (SQLite's full outer join)."""
        statement = (
            "SELECT COALESCE(a.position, e.rowid), e.originator_id, e.originator_version, "
            f"e.topic, e.state, a.hash FROM audit_chain a FULL OUTER JOIN {self.events_table_name}"
            " e ON e.rowid = a.position ORDER BY COALESCE(a.position, e.rowid)"
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement)
            return [StoredLink(*row) for row in c.fetchall()]

    def link_at(self, position: int) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT hash FROM audit_chain WHERE position = ?", [position])
            row = c.fetchone()
            return row[0] if row else None

    def select_tracked(self, application_name: str, positions: Sequence[int]) -> set[int]:
        """Which of ``positions`` of ``application_name`` have already been processed."""
        return set(
            self._select_in(
                "SELECT notification_id FROM tracking WHERE application_name=? AND notification_id",
                application_name,
                positions,
            )
        )

    def select_known_keys(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (scope, key) pairs were already recorded."""
        found: set[tuple[str, str]] = set()
        # SQLite allows 32766 parameters: two per pair, in chunks well below it.
        for start in range(0, len(pairs), 5_000):
            chunk = pairs[start : start + 5_000]
            rows = ",".join("(?,?)" for _ in chunk)
            with self.datastore.transaction(commit=False) as c:
                statement = "SELECT scope, key FROM idempotency_keys WHERE (scope, key) IN "
                c.execute(f"{statement}(VALUES {rows})", [part for pair in chunk for part in pair])
                found.update((scope, key) for scope, key in c.fetchall())
        return found

    def _select_in(self, statement: str, first: Any, values: Sequence[Any]) -> list[Any]:
        found: list[Any] = []
        # SQLite allows 32766 parameters; stay well below it.
        for start in range(0, len(values), 10_000):
            chunk = values[start : start + 10_000]
            with self.datastore.transaction(commit=False) as c:
                c.execute(f"{statement} IN ({','.join('?' * len(chunk))})", [first, *chunk])
                found += [row[0] for row in c.fetchall()]
        return found


class PydanticTranscoding(Transcoding):
    """Stores a pydantic model inside events and snapshots as its JSON form."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.type = self._model = model
        self.name = f"{model.__module__}.{model.__qualname__}"

    def encode(self, obj: BaseModel) -> dict[str, Any]:
        return obj.model_dump(mode="json")

    def decode(self, data: dict[str, Any]) -> BaseModel:
        return self._model.model_validate(data)


def _topic(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def store_environment(settings: Settings) -> dict[str, str]:
    """The ``eventsourcing`` environment for this service's store."""
    if settings.persistence == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(settings.data_dir / f"{settings.service}.sqlite"),
            "SQLITE_LOCK_TIMEOUT": "10",
            "SINGLE_ROW_TRACKING": "no",
            "PROCESS_RECORDER_TOPIC": _topic(BatchTrackingSQLiteRecorder),
        }
    raise NotImplementedError("PostgreSQL event stores arrive with the production deployment")


class ServiceApplication(Application[UUID]):
    """Base of the three services' applications.

    Listeners registered with ``on_recorded`` hear about every commit (the outbox relay wakes
    up on them); ``record_batch`` stores the events of many consumed messages with their
    tracking records in one transaction.
    """

    #: Pydantic models that aggregates keep in their state (snapshots store them).
    stored_models: ClassVar[tuple[type[BaseModel], ...]] = ()

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self._listeners: list[Callable[[], None]] = []
        STORE_HEAD.set(self.max_position())
        #: Held by every writer that reads aggregates, decides and commits (consumed batches,
        #: timers): two such writers in one process would only conflict and retry.
        self.write_lock = threading.RLock()
        self._listeners_lock = threading.Lock()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for model in self.stored_models:
            transcoder.register(PydanticTranscoding(model))

    def construct_recorder(self) -> Any:
        return self.factory.process_recorder()

    @property
    def tracking_recorder(self) -> BatchTrackingSQLiteRecorder:
        recorder = self.recorder
        assert isinstance(recorder, BatchTrackingSQLiteRecorder)
        return recorder

    def on_recorded(self, listener: Callable[[], None]) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for recording in recordings:
            EVENTS_APPENDED.labels(type(recording.domain_event).__qualname__).inc()
        if recordings:
            STORE_HEAD.set(recordings[-1].notification.id)
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def record_batch(
        self,
        processing: ProcessingEvent[UUID],
        trackings: Sequence[Tracking] = (),
        idempotency_keys: Sequence[tuple[str, str]] = (),
    ) -> list[Recording[UUID]]:
        """Commit the collected events with the tracking records (or idempotency keys) of
        the inputs that caused them, atomically."""
        processing.saved_kwargs["trackings"] = trackings
        processing.saved_kwargs["idempotency_keys"] = idempotency_keys
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshot from the aggregate in hand instead of replaying it from the store, as the
        library does: after a commit it is at the version just stored, and a long aggregate
        (a KPI with millions of readings) would otherwise be read back at every snapshot."""
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

    def as_of(self, aggregate_id: UUID, instant: datetime) -> Any | None:
        """The aggregate as it was at ``instant``: rebuilt from its events recorded up to then
        (snapshots help), not today's state filtered. None when it did not exist yet."""
        version = None
        domain_event: Any
        for domain_event in self.events.get(aggregate_id):
            if domain_event.timestamp > instant:
                break
            version = domain_event.originator_version
        if version is None:
            return None
        return self.repository.get(aggregate_id, version=version)

    def max_position(self) -> int:
        """The position of the last event in this service's log (0 when empty)."""
        return self.recorder.max_notification_id() or 0
