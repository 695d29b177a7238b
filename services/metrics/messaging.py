"""The metrics service on Kafka: raw readings in from ``kpi.readings`` (exactly once by reading
id, rejects to the DLQ), and stored events out to ``metrics.events`` through the outbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from contracts import (
    ContractModel,
    Envelope,
    Health,
    KPIDefined,
    KPIDefinition,
    KPIReading,
    KPIRecorded,
    KPIRecordedPayload,
    describe_validation_error,
)
from services.metrics.application import READINGS, MetricsApplication
from services.metrics.domain import KPI
from services.shared.dlq import ConsumedRecord, DeadLetters
from services.shared.outbox import envelope_for

log = logging.getLogger(__name__)

#: A reading is a few hundred bytes; anything much larger is not a reading.
MAX_READING_BYTES = 64 * 1024


def published_form(domain_event: Any) -> tuple[str, type[Envelope], ContractModel]:
    """The KPI key, integration event class and payload a stored KPI event is published as."""
    if isinstance(domain_event, KPI.Defined | KPI.Redefined):
        definition = KPIDefinition.model_validate(domain_event.definition)
        return definition.key, KPIDefined, definition
    if isinstance(domain_event, KPI.Recorded):
        # Constructed, not validated: one per reading, from events validated when recorded.
        return (
            domain_event.kpi,
            KPIRecorded,
            KPIRecordedPayload.model_construct(
                kpi=domain_event.kpi,
                value=domain_event.value,
                observed_at=domain_event.observed_at,
                source=domain_event.source,
                reading_id=domain_event.reading_id,
                unit=domain_event.unit,
                health=Health(domain_event.health),
            ),
        )
    raise TypeError(f"no integration event for {type(domain_event).__qualname__}")


def integration_event(domain_event: Any, position: int, epoch: str = "") -> Envelope:
    """The envelope the outbox publishes; the aggregate id (and Kafka key) is the KPI key."""
    key, event_class, payload = published_form(domain_event)
    return envelope_for(
        event_class, domain_event, position, payload, key, epoch=epoch, trusted=True
    )


def parse_reading(raw: bytes | None) -> KPIReading:
    """Decode one raw ``kpi.readings`` message; raises ``InvalidReading`` saying why."""
    if raw is None or not raw.strip():
        raise InvalidReading("empty message", "not_json")
    if len(raw) > MAX_READING_BYTES:
        raise InvalidReading(
            f"message of {len(raw)} bytes exceeds {MAX_READING_BYTES} bytes", "oversized"
        )
    try:
        reading = KPIReading.model_validate_json(raw)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise InvalidReading(
                f"not JSON: {describe_validation_error(error)}", "not_json"
            ) from None
        raise InvalidReading(describe_validation_error(error), "invalid_fields") from None
    return reading


class InvalidReading(ValueError):
    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class ReadingIngestor:
    """Handles batches from ``kpi.readings``: valid readings are recorded in one transaction
    (duplicates by reading id acknowledged, not recorded again); everything else goes to
    ``kpi.readings.dlq`` with the reason, and the consumer goes on."""

    def __init__(self, application: MetricsApplication, dead_letters: DeadLetters) -> None:
        self._application = application
        self._dead_letters = dead_letters

    async def handle_batch(self, records: Sequence[ConsumedRecord]) -> None:
        readings: list[KPIReading] = []
        sources: list[ConsumedRecord] = []
        refused: list[tuple[ConsumedRecord, str, str]] = []
        for record in records:
            try:
                readings.append(parse_reading(record.value))
                sources.append(record)
            except InvalidReading as error:
                refused.append((record, error.reason, error.kind))
        READINGS.labels("received").inc(len(refused))  # unreadable: never reach record()
        READINGS.labels("rejected").inc(len(refused))
        outcomes = await asyncio.to_thread(self._application.record, readings)
        for outcome in outcomes:
            if outcome.status == "rejected":
                refused.append((sources[outcome.index], outcome.reason or "rejected", "rejected"))
        for record, reason, kind in refused:
            log.warning("dead-lettering %s@%s: %s", record.topic, record.offset, reason)
            await self._dead_letters.send(record, reason, kind)
