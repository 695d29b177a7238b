"""The event store of a service: an ``eventsourcing`` application whose recorder also keeps
tracking records, so that consumed messages and the events they cause commit together.

The adapter (SQLite or PostgreSQL) is chosen by configuration, as ``eventsourcing`` does it:
``store_environment`` turns ``Settings`` into the library's environment variables.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import JSONTranscoder, Recording, Tracking, Transcoding
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder
from pydantic import BaseModel

from services.shared.settings import Settings

OUTBOX_TRACKING_PREFIX = "outbox:"


class BatchTrackingSQLiteRecorder(SQLiteProcessRecorder):
    """A process recorder that takes many tracking records in one transaction.

    ``eventsourcing`` records one tracking object per transaction; a consumer that commits a
    whole Kafka batch at once passes ``trackings=[...]`` instead. Tracking rows are keyed by
    (producer, position), one row each, so positions may arrive in any order across partitions.
    """

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[Any], **kwargs: Any) -> Any:
        returning = super()._insert_events(c, stored_events, **kwargs)
        for tracking in kwargs.get("trackings", ()):
            self._insert_tracking(c, tracking)
        return returning

    def select_tracked(self, application_name: str, positions: Sequence[int]) -> set[int]:
        """Which of ``positions`` of ``application_name`` have already been processed."""
        if not positions:
            return set()
        marks = ",".join("?" * len(positions))
        statement = (
            "SELECT notification_id FROM tracking "
            f"WHERE application_name=? AND notification_id IN ({marks})"
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, [application_name, *positions])
            return {row[0] for row in c.fetchall()}


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
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def record_batch(self, processing: ProcessingEvent[UUID], trackings: list[Tracking]) -> None:
        """Commit the collected events and the tracking records of their causes atomically."""
        processing.saved_kwargs["trackings"] = trackings
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)

    def max_position(self) -> int:
        """The position of the last event in this service's log (0 when empty)."""
        return self.recorder.max_notification_id() or 0
