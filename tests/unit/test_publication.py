"""What a relay sends for each stored event (``Publication``) is the JSON of the event's
contract model, byte for byte: validated on the way out, or, on the hot paths, serialized from
the stored fields without building the model. And the stable event id stays ``uuid5``'s."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    Envelope,
    Health,
    KeyResultScored,
    KPIDefined,
    KPIRecorded,
    ObjectiveScored,
    PaceStatus,
)
from contracts.envelope import EVENT_ID_NAMESPACE, stable_event_id
from services.alignment.domain import ObjectiveTrack
from services.alignment.evaluation import check_in_citation, reading_citation
from services.alignment.publishing import integration_event as alignment_event
from services.alignment.scoring import ReadingRef
from services.metrics.domain import KPI
from services.metrics.publishing import integration_event as metrics_event
from services.shared.integration_events import publication_for
from tests.support import sent_envelope
from tests.unit.test_contracts import EXAMPLES

TEXT = st.text(st.characters(blacklist_categories=["Cs"]))  # no lone surrogates
INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 2),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
FRACTIONS = st.floats(0, 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
POSITIONS = st.integers(1, 2**40)
EPOCHS = st.from_regex(r"[0-9A-Za-z_-]{0,32}", fullmatch=True)


@dataclass(frozen=True)
class Stored:
    """What ``publication_for`` reads of a stored domain event."""

    originator_version: int
    timestamp: datetime
    actor: str
    correlation_id: str | None


def as_published(event: Envelope) -> tuple[Stored, Envelope]:
    """A stored event that publishes as ``event``, and ``event`` as published (its id derived
    from producer, aggregate and version; no causation)."""
    stored = Stored(event.aggregate_version, event.occurred_at, event.actor, event.correlation_id)
    event_id = stable_event_id(event.producer, event.aggregate_id, event.aggregate_version)
    return stored, event.model_copy(update={"event_id": event_id, "causation_id": None})


@pytest.mark.parametrize("trusted", [False, True], ids=["validated", "trusted"])
@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_contract_is_sent_as_the_json_of_its_model(event_type: str, trusted: bool) -> None:
    stored, expected = as_published(EXAMPLES[event_type])
    # Trusted, a payload is its plain fields.
    payload = expected.payload.model_dump() if trusted else expected.payload
    publication = publication_for(
        type(expected),
        stored,
        expected.position,
        payload,
        expected.aggregate_id,
        epoch=expected.epoch,
        trusted=trusted,
    )
    assert publication.value == expected.to_json()
    assert sent_envelope(publication) == expected


def test_an_event_not_trusted_is_validated() -> None:
    stored, _ = as_published(EXAMPLES["KPIDefined"])
    with pytest.raises(ValidationError, match="key"):
        publication_for(KPIDefined, stored, 1, {"key": "Not a key"}, "nps")


def stored_event(event_class: type[Any], **fields: Any) -> Any:
    """A domain event as a service's store gives it back."""
    return event_class(originator_id=uuid.uuid4(), **fields)


@given(
    kpi=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    value=FINITE,
    observed_at=INSTANTS,
    recorded_at=INSTANTS,
    source=TEXT,
    reading_id=TEXT,
    unit=st.none() | TEXT,
    health=st.sampled_from([h.value for h in Health]),
    actor=TEXT.filter(bool),
    correlation_id=st.none() | TEXT,
    version=POSITIONS,
    position=POSITIONS,
    epoch=EPOCHS,
)
def test_a_reading_is_sent_as_the_json_of_its_contract_model(
    kpi: str,
    value: float,
    observed_at: datetime,
    recorded_at: datetime,
    source: str,
    reading_id: str,
    unit: str | None,
    health: str,
    actor: str,
    correlation_id: str | None,
    version: int,
    position: int,
    epoch: str,
) -> None:
    stored = stored_event(
        KPI.Recorded,
        originator_version=version,
        timestamp=recorded_at,
        kpi=kpi,
        reading_id=reading_id,
        value=value,
        observed_at=observed_at,
        source=source,
        unit=unit,
        health=health,
        actor=actor,
        correlation_id=correlation_id,
    )
    envelope = sent_envelope(metrics_event(stored, position, epoch))
    assert isinstance(envelope, KPIRecorded)
    assert (envelope.position, envelope.epoch, envelope.aggregate_id) == (position, epoch, kpi)
    assert (envelope.payload.value, envelope.payload.observed_at) == (value, observed_at)
    assert envelope.payload.health is Health(health)
    assert envelope.event_id == stable_event_id("metrics", kpi, version)


CITATIONS = st.lists(
    st.builds(
        lambda reading_id, value, observed_at, position, source: reading_citation(
            ReadingRef(reading_id, value, observed_at, position, source)
        ),
        TEXT,
        FINITE,
        INSTANTS,
        POSITIONS,
        TEXT,
    )
    | st.builds(check_in_citation, POSITIONS),
    max_size=12,
)


@given(
    score=FRACTIONS,
    progress=FINITE | st.integers(-5, 5),
    value=st.none() | FINITE | st.integers(-(2**53), 2**53),  # a count is a whole number
    expected=FRACTIONS | st.sampled_from([0, 1]),
    status=st.sampled_from([s.value for s in PaceStatus]),
    as_of=INSTANTS,
    lineage=CITATIONS,
    version=POSITIONS,
    position=POSITIONS,
)
def test_a_key_result_score_is_sent_as_the_json_of_its_contract_model(
    score: float,
    progress: float,
    value: float | None,
    expected: float,
    status: str,
    as_of: datetime,
    lineage: list[dict[str, Any]],
    version: int,
    position: int,
) -> None:
    stored = stored_event(
        ObjectiveTrack.KeyResultEvaluated,
        originator_version=version,
        timestamp=as_of,
        objective_id="objective-1",
        key_result_id="kr-1",
        stats=None,
        value=value,
        progress=progress,
        score=score,
        expected=expected,
        status=status,
        as_of=as_of,
        lineage=lineage,
        published=True,
    )
    envelope = sent_envelope(alignment_event(stored, position))
    assert isinstance(envelope, KeyResultScored)
    assert envelope.payload.value == value
    assert (envelope.payload.score, envelope.payload.progress) == (score, progress)
    assert envelope.payload.status is PaceStatus(status)
    assert [item.position for item in envelope.payload.lineage] == [c["position"] for c in lineage]
    assert [
        None if item.observed_at is None else item.observed_at.isoformat()
        for item in envelope.payload.lineage
    ] == [c.get("observed_at") for c in lineage]


@given(
    score=FRACTIONS | st.sampled_from([0, 1]),
    expected=FRACTIONS,
    status=st.sampled_from([s.value for s in PaceStatus]),
    as_of=INSTANTS,
    final=st.booleans(),
    success=st.none() | st.booleans(),
    position=POSITIONS,
)
def test_an_objective_score_is_sent_as_the_json_of_its_contract_model(
    score: float,
    expected: float,
    status: str,
    as_of: datetime,
    final: bool,
    success: bool | None,
    position: int,
) -> None:
    stored = stored_event(
        ObjectiveTrack.ObjectiveEvaluated,
        originator_version=1,
        timestamp=as_of,
        objective_id="objective-1",
        score=score,
        expected=expected,
        status=status,
        as_of=as_of,
        final=final,
        success=success,
        published=True,
    )
    envelope = sent_envelope(alignment_event(stored, position))
    assert isinstance(envelope, ObjectiveScored)
    assert (envelope.payload.score, envelope.payload.final, envelope.payload.success) == (
        score,
        final,
        success,
    )


@given(st.sampled_from(["goal", "metrics", "alignment"]), TEXT.filter(bool), st.integers(1))
def test_the_stable_event_id_is_uuid5_of_producer_aggregate_and_version(
    producer: str, aggregate_id: str, version: int
) -> None:
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{producer}/{aggregate_id}/{version}")
    assert stable_event_id(producer, aggregate_id, version) == expected
