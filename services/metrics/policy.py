"""How the metrics service takes in raw readings from ``kpi.readings``: each polled batch
recorded in one transaction, exactly once by reading id; what cannot be a reading, or is
rejected, goes to ``kpi.readings.dlq`` with the reason."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pydantic import ValidationError

from contracts import KPIReading, describe_validation_error
from services.metrics.application import MetricsApplication
from services.metrics.telemetry import READINGS
from services.shared.dlq import ConsumedRecord, DeadLetters

log = logging.getLogger(__name__)

#: A reading is a few hundred bytes; anything much larger is not a reading.
MAX_READING_BYTES = 64 * 1024


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
