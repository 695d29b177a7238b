"""How a stored domain event becomes the integration event its service publishes, and the Kafka
message (key, value, headers) the outbox relay sends for it.

A relay sends one message per stored event, so on the hot paths it encodes an event's fields
as they are instead of building its contract model first: the same bytes
(``tests/unit/test_publication.py`` holds them equal) at a fraction of the cost. The contract
models stay the single source of truth: the other events are validated on the way out, and
``Publication.envelope`` is the model of what was sent.

Apart from the relay (``services.shared.outbox``): the services' publishing modules build
their envelopes with it, and the benches encode messages without running a relay.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pydantic_core

from contracts import ContractModel, Envelope, stable_event_id
from services.shared.store import LogEpochs


@dataclass(frozen=True, slots=True)
class Publication:
    """An integration event as the relay sends it: its contract class, the Kafka message key
    (the aggregate id, as ``Envelope.key``) and value (the JSON of its contract model)."""

    event_class: type[Envelope]
    key: bytes
    value: bytes

    def envelope(self) -> Envelope:
        """The contract model of this event, validated."""
        return self.event_class.model_validate_json(self.value)


class Translator(Protocol):
    """Turns one stored domain event (with its log position, and the epoch of the log that
    position belongs to) into the integration event to publish, or None for an event that
    stays internal to the service."""

    def __call__(
        self, domain_event: Any, position: int, epoch: str = "", /
    ) -> Publication | None: ...


def publication_for(
    event_class: type[Envelope],
    domain_event: Any,
    position: int,
    payload: ContractModel | Mapping[str, Any],
    aggregate_id: str,
    *,
    epoch: str = "",
    trusted: bool = False,
) -> Publication:
    """The integration event of a stored domain event at ``position`` of its producer's log,
    in ``epoch``.

    The event id derives from (producer, aggregate id, version), so a republished event keeps
    it; the actor and correlation id come from the event when it records them. Validated
    unless ``trusted``, for the hot paths of events whose fields were validated or computed
    by the service itself: their payload is then its model's fields as plain values (enums
    as their values), in the model's order, and serialized without building the model.
    """
    producer, event_type, schema_version = _identity(event_class)
    fields = {
        "event_id": stable_event_id(producer, aggregate_id, domain_event.originator_version),
        "event_type": event_type,
        "schema_version": schema_version,
        "producer": producer,
        "position": position,
        "epoch": epoch,
        "aggregate_id": aggregate_id,
        "aggregate_version": domain_event.originator_version,
        "occurred_at": domain_event.timestamp,
        "actor": getattr(domain_event, "actor", producer),
        "causation_id": None,
        "correlation_id": getattr(domain_event, "correlation_id", None),
        "payload": payload,
    }
    value = (
        pydantic_core.to_json(fields) if trusted else event_class.model_validate(fields).to_json()
    )
    return Publication(event_class, aggregate_id.encode(), value)


@functools.cache
def _identity(event_class: type[Envelope]) -> tuple[str, str, int]:
    """The producer, event type and schema version a concrete event class fixes (read once
    per class: ``model_fields`` is looked up anew on every access)."""
    fields = event_class.model_fields
    return (
        fields["producer"].default,
        fields["event_type"].default,
        fields["schema_version"].default,
    )


#: A Kafka message as the relay sends it: key, value and headers.
Message = tuple[bytes, bytes, list[tuple[str, bytes]]]


def encode_messages(
    events: Iterable[tuple[int, Any]], translate: Translator, epochs: LogEpochs | None = None
) -> list[Message]:
    """The messages of stored (position, domain event) pairs, each in the epoch of the log
    its position belongs to; internal events have none."""
    return [message for _, message in positioned_messages(events, translate, epochs)]


def positioned_messages(
    events: Iterable[tuple[int, Any]], translate: Translator, epochs: LogEpochs | None = None
) -> list[tuple[int, Message]]:
    """``encode_messages``, each message with the log position of its event."""
    messages = []
    for position, domain_event in events:
        publication = translate(domain_event, position, epochs.at(position) if epochs else "")
        if publication is None:
            continue
        # A list of its own for each message: aiokafka takes nothing else.
        message = (publication.key, publication.value, list(_headers(publication.event_class)))
        messages.append((position, message))
    return messages


@functools.cache
def _headers(event_class: type[Envelope]) -> tuple[tuple[str, bytes], ...]:
    """The headers of every message of one event class, made once."""
    producer, event_type, schema_version = _identity(event_class)
    return (
        ("event_type", event_type.encode()),
        ("schema_version", str(schema_version).encode()),
        ("producer", producer.encode()),
        ("content-type", b"application/json"),
    )
