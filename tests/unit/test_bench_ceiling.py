"""The contract ceilings of ``make bench`` do the decoding and encoding the services must do:
each stage's output is a valid message of the contracts, and the next stage reads it."""

import json

import pytest

from contracts import KeyResultScored, KPIRecorded, parse_event
from services.metrics.policy import InvalidReading
from services.shared.integration_events import encode_messages
from tests.bench.__main__ import reading
from tests.bench.ceiling import recorded, scored


def test_a_reading_goes_through_both_stages_as_contract_messages() -> None:
    raw = json.dumps(reading(7)).encode()

    [(key, value, headers)] = encode_messages([(1, recorded(raw, 1))], lambda e, *_: e)
    published = parse_event(value, dict(headers)["event_type"].decode())
    assert isinstance(published, KPIRecorded)
    assert key == b"kpi_007"
    assert published.payload.value == reading(7)["value"]

    [(_, value, headers)] = encode_messages([(1, scored(value, "KPIRecorded", 1))], lambda e, *_: e)
    score = parse_event(value, dict(headers)["event_type"].decode())
    assert isinstance(score, KeyResultScored)
    assert score.payload.value == reading(7)["value"]


def test_the_first_stage_validates_readings_as_metrics_does() -> None:
    with pytest.raises(InvalidReading):
        recorded(b'{"kpi": "kpi_001"}', 1)
