"""The event store of a service: an ``eventsourcing`` application whose recorder also keeps
tracking records, so that consumed messages and the events they cause commit together.

The adapter (SQLite or PostgreSQL) is chosen by configuration, as ``eventsourcing`` does it:
``store_environment`` turns ``Settings`` into the library's environment variables.
"""

from __future__ import annotations

import threading
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import ProcessingEvent, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    JSONTranscoder,
    Notification,
    Recording,
    Tracking,
    Transcoding,
)
from pydantic import BaseModel

from services.shared.eventsourcing_seams import CommitHooks, ReplayingRepository
from services.shared.postgres import BatchTrackingPostgresRecorder
from services.shared.recorder import BatchTrackingRecorder
from services.shared.settings import Settings
from services.shared.sqlite import BatchTrackingSQLiteRecorder
from services.shared.telemetry import EVENTS_APPENDED, STORE_HEAD

OUTBOX_TRACKING_PREFIX = "outbox:"


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
    env = {
        # Many tracking rows per transaction, one per consumed (producer, position).
        "SINGLE_ROW_TRACKING": "no",
    }
    if settings.cipher_key is not None:
        # Events and snapshots are encrypted (AES-GCM) before they reach the database.
        env |= {
            "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
            "CIPHER_KEY": settings.cipher_key.get_secret_value(),
        }
    if settings.persistence == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return env | {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(settings.data_dir / f"{settings.service}.sqlite"),
            "SQLITE_LOCK_TIMEOUT": "10",
            "PROCESS_RECORDER_TOPIC": _topic(BatchTrackingSQLiteRecorder),
        }
    return env | {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_HOST": settings.postgres_host,
        "POSTGRES_PORT": str(settings.postgres_port),
        "POSTGRES_USER": settings.postgres_user,
        "POSTGRES_PASSWORD": settings.postgres_password.get_secret_value(),
        "POSTGRES_DBNAME": settings.postgres_dbname,
        "POSTGRES_SCHEMA": settings.postgres_schema or settings.service,
        # Wait this long for the events table lock before giving up (and retrying).
        "POSTGRES_LOCK_TIMEOUT": "10",
        "PROCESS_RECORDER_TOPIC": _topic(BatchTrackingPostgresRecorder),
    }


def processing_event(aggregates: Iterable[Aggregate]) -> ProcessingEvent[UUID]:
    """The pending events of ``aggregates``, to store in one transaction. What the library's
    ``ProcessingEvent.collect_events`` does for aggregates, without its runtime protocol
    checks (two ``isinstance`` against protocols per aggregate, costly in small batches)."""
    processing: ProcessingEvent[UUID] = ProcessingEvent()
    for aggregate in aggregates:
        processing.events.extend(aggregate.collect_events())
        processing.aggregates[aggregate.id] = aggregate
    return processing


#: Called after each commit, in the committing thread, with what it stored.
Listener = Callable[[Sequence[Recording[UUID]]], None]


class LogEpochs:
    """The epoch each position of a log belongs to. Positions before the first epoch (a log
    written before stores had epochs) belong to none: the empty name."""

    def __init__(self, epochs: Sequence[tuple[int, str]]) -> None:
        self._first_positions = [first for first, _ in epochs]
        self._names = [name for _, name in epochs]

    def at(self, position: int) -> str:
        index = bisect_right(self._first_positions, position) - 1
        return self._names[index] if index >= 0 else ""


class ServiceApplication(CommitHooks):
    """Base of the three services' applications.

    Listeners registered with ``on_recorded`` hear about every commit, with its recordings
    (the outbox relay takes the new events from them); ``record_batch`` stores the events of
    many consumed messages with their tracking records in one transaction.
    """

    #: Pydantic models that aggregates keep in their state (snapshots store them).
    stored_models: ClassVar[tuple[type[BaseModel], ...]] = ()

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        #: Every process writes in an epoch of its own: a store restored from a backup, or
        #: rebuilt, numbers its new events from an earlier position again, and consumers
        #: tell them from the events once published at those positions by the epoch.
        self.epoch = uuid.uuid4().hex[:12]
        self.tracking_recorder.start_epoch(self.epoch)
        self._listeners: list[Listener] = []
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

    def construct_repository(self) -> Repository[UUID]:
        library = super().construct_repository()  # configured from the environment
        return ReplayingRepository(
            event_store=library.event_store,
            snapshot_store=library.snapshot_store,
            # No cache, a bounded one, or (0) an unbounded one, as configured.
            cache_maxsize=None if library.cache is None else getattr(library.cache, "maxsize", 0),
            fastforward=library.fastforward,
            fastforward_skipping=library.fastforward_skipping,
            deepcopy_from_cache=library.deepcopy_from_cache,
        )

    @property
    def tracking_recorder(self) -> BatchTrackingRecorder:
        recorder = self.recorder
        assert isinstance(recorder, BatchTrackingRecorder)
        return recorder

    def on_recorded(self, listener: Listener) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def recorded(self, recordings: list[Recording[UUID]]) -> None:
        appended = Counter(type(r.domain_event).__qualname__ for r in recordings)
        for event_type, count in appended.items():  # a labelled child costs a lookup each
            EVENTS_APPENDED.labels(event_type).inc(count)
        if recordings:
            STORE_HEAD.set(recordings[-1].notification.id)
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(recordings)

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
        return self.commit(processing)

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

    def log_epochs(self) -> LogEpochs:
        """The epochs of this log as the store has them now (another instance sharing the
        store may have begun one since)."""
        return LogEpochs(self.tracking_recorder.select_epochs())

    def max_position(self) -> int:
        """The position of the last event in this service's log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def notifications(
        self,
        after: int = 0,
        *,
        stop: int | None = None,
        topics: Sequence[str] = (),
        page: int = 1000,
    ) -> Iterator[Notification]:
        """The stored events after position ``after`` (up to ``stop``; of ``topics`` only,
        when given), in log order, read ``page`` at a time."""
        while True:
            found = self.recorder.select_notifications(after + 1, page, stop=stop, topics=topics)
            yield from found
            if len(found) < page:
                return
            after = found[-1].id
