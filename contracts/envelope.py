"""The envelope every integration event travels in.

Each concrete event is a subclass that fixes ``event_type`` and ``schema_version`` with
``Literal`` types and gives ``payload`` its model, so the JSON Schema of each event is exact.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

Producer = Literal["goal", "metrics", "alignment"]

#: Namespace for event ids, so that a republished event keeps its id (uuid5 is deterministic).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c7c1e-4a5e-4f0b-9d0b-0c1b6f5e2a10")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def stable_event_id(producer: str, aggregate_id: str, aggregate_version: int) -> uuid.UUID:
    """The id of the event that moved ``aggregate_id`` to ``aggregate_version`` in ``producer``.

    Derived, not random: the outbox may publish an event more than once, and consumers
    recognise the copies by this id.
    """
    # uuid.uuid5, without its per-call import and argument handling: once per published event.
    name = f"{producer}/{aggregate_id}/{aggregate_version}".encode()
    return uuid.UUID(bytes=hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16], version=5)


class ContractModel(BaseModel):
    """Base of all contract models: strict about unknown fields, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        # Frozen: a copy could never differ. Aggregates holding definitions are deep-copied
        # on every read from the repository's cache, and copying these was most of it.
        return self


def _require_identifying_fields(schema: dict[str, Any]) -> None:
    """``event_type``, ``schema_version`` and ``producer`` have defaults in Python (each class
    fixes them) but every message must carry them: say so in the exported JSON Schema."""
    required = schema.setdefault("required", [])
    for name in ("event_type", "schema_version", "producer"):
        if name not in required:
            required.append(name)


class Envelope(ContractModel):
    """Fields common to every integration event; ``payload`` is typed by each subclass."""

    model_config = ConfigDict(json_schema_extra=_require_identifying_fields)

    #: The topic a concrete event is published on (not serialised).
    topic: ClassVar[str]

    event_id: uuid.UUID = Field(description="Stable across republishing of the same stored event.")
    event_type: str
    schema_version: int = Field(ge=1)
    producer: Producer
    position: int = Field(ge=1, description="Position of the event in the producer's log.")
    epoch: str = Field(
        default="",
        max_length=32,
        pattern=r"^[0-9A-Za-z_-]*$",
        description=(
            "The producer log's epoch the position counts in: a producer whose store was "
            "restored from a backup or rebuilt numbers new events from earlier positions "
            "again, in a new epoch. Empty from producers without epochs."
        ),
    )
    aggregate_id: str = Field(min_length=1, description="Also the Kafka message key.")
    aggregate_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    actor: str = Field(min_length=1, description="Who caused the change (user or service).")
    causation_id: str | None = Field(
        default=None, description="Id of the event or request that caused this event."
    )
    correlation_id: str | None = Field(
        default=None, description="Id shared by all events of one business transaction."
    )
    payload: Any

    @field_validator("schema_version", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        # A Literal version also matches true and 1.0 (equal in Python): not in a message.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a positive integer")
        return value

    @property
    def origin(self) -> str:
        """The log ``position`` counts in: the producer, in its epoch when it has one.
        Consumers record what they applied by (origin, position)."""
        return f"{self.producer}@{self.epoch}" if self.epoch else self.producer

    def key(self) -> bytes:
        """The Kafka message key: the aggregate id, so one aggregate's events stay in order."""
        return self.aggregate_id.encode()

    def to_json(self) -> bytes:
        # What ``model_dump_json`` gives, as bytes without a round trip through str.
        return self.__pydantic_serializer__.to_json(self)
