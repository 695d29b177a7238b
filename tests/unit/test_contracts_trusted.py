"""``ContractModel.trusted`` builds the same model pydantic's ``model_construct`` and
``model_validate`` build from fields of their declared types (it sets pydantic's own instance
attributes: an upgrade that changes them fails here), and the stable event id stays
``uuid5``'s."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import ContractModel
from contracts.envelope import EVENT_ID_NAMESPACE, stable_event_id
from tests.unit.test_contracts import EXAMPLES


def fields_of(model: ContractModel) -> dict[str, Any]:
    """A model's fields with their declared types (nested models as models)."""
    return {name: getattr(model, name) for name in type(model).model_fields}


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_a_trusted_event_equals_the_validated_one(event_type: str) -> None:
    event = EXAMPLES[event_type]
    payload = event.payload
    trusted_payload = type(payload).trusted(**fields_of(payload))
    trusted = type(event).trusted(**(fields_of(event) | {"payload": trusted_payload}))

    constructed = type(event).model_construct(**fields_of(event))
    assert trusted == event == constructed
    assert trusted.to_json() == event.to_json() == event.model_dump_json().encode()
    assert trusted.model_fields_set == constructed.model_fields_set
    assert trusted_payload.model_dump() == payload.model_dump()


def test_a_trusted_model_needs_every_field() -> None:
    event = next(iter(EXAMPLES.values()))
    fields = fields_of(event)
    del fields["correlation_id"]
    with pytest.raises(TypeError, match="takes every field"):
        type(event).trusted(**fields)
    with pytest.raises(TypeError, match="takes every field"):
        type(event).trusted(**fields_of(event), unknown=1)


@given(
    st.sampled_from(["goal", "metrics", "alignment"]),
    st.text(st.characters(blacklist_categories=["Cs"]), min_size=1),  # no lone surrogates
    st.integers(1),
)
def test_the_stable_event_id_is_uuid5_of_producer_aggregate_and_version(
    producer: str, aggregate_id: str, version: int
) -> None:
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{producer}/{aggregate_id}/{version}")
    assert stable_event_id(producer, aggregate_id, version) == expected
