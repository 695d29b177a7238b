"""The inbound ``KPIReading`` that outside systems write to ``kpi.readings`` or post to the
metrics service, and the service's answer to readings posted over HTTP: what became of each.

A reading has no envelope: outside systems have no event log, so the reading id is the
idempotency key.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from contracts.envelope import ContractModel


def derive_reading_id(kpi: str, source: str, observed_at: datetime, value: float) -> str:
    """The reading id used when a source gives none: the same observation always gets the same id.

    The first 32 hex digits of sha256 over the UTF-8 text ``kpi|source|instant|value`` where
    ``instant`` is observed_at in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fraction
    digits) and ``value`` is the shortest text that reads back as the same double, always with a
    fraction or exponent (``100.0``, ``0.1``, ``1e+22``; Python's ``repr(float)``).
    """
    moment = observed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    digest = hashlib.sha256(f"{kpi}|{source}|{moment}|{float(value)!r}".encode())
    return digest.hexdigest()[:32]


class KPIReading(ContractModel):
    kpi: str = Field(min_length=1, max_length=128)
    value: float
    observed_at: AwareDatetime
    source: str = Field(min_length=1, max_length=128)
    reading_id: str | None = Field(default=None, max_length=128)
    unit: str | None = Field(default=None, max_length=32)

    @field_validator("value", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        # JSON true or "42" is not a number; lax parsing would record them as 1.0 and 42.0.
        if isinstance(value, bool | str | bytes):
            raise ValueError("value must be a JSON number")
        return value

    @field_validator("observed_at", mode="before")
    @classmethod
    def _an_iso_datetime(cls, value: Any) -> Any:
        # A bare number would be taken as Unix time; the contract says ISO-8601 text.
        if isinstance(value, int | float):
            raise ValueError("observed_at must be an ISO-8601 date-time with a timezone")
        return value

    @field_validator("observed_at", mode="after")
    @classmethod
    def _within_utc(cls, value: datetime) -> datetime:
        # Year 1 at +01:00 is valid ISO-8601 but no instant in UTC: every comparison, the
        # derived reading id and the stores would overflow on it.
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range once converted to UTC") from None
        return value

    @model_validator(mode="after")
    def _derive_missing_reading_id(self) -> KPIReading:
        if self.reading_id is None:
            derived = derive_reading_id(self.kpi, self.source, self.observed_at, self.value)
            object.__setattr__(self, "reading_id", derived)
        return self


# The metrics service's answer to readings posted over HTTP. Described in comments: a
# docstring would become a description in the service's OpenAPI document.

#: What became of a reading: recorded, a duplicate of one recorded before (by reading id), or
#: rejected (with the reason).
ReadingStatus = Literal["recorded", "duplicate", "rejected"]


#: What became of one reading of a request.
class OutcomeView(BaseModel):
    index: int = Field(description="Position of the reading in the request.")
    kpi: str | None
    reading_id: str | None
    status: ReadingStatus
    reason: str | None = None


#: The answer to a request: how many readings became what, and each one's outcome.
class IngestReport(BaseModel):
    recorded: int
    duplicates: int
    rejected: int
    outcomes: list[OutcomeView] = Field(description="One per reading, in request order.")
