"""The stores' transcoder writes plain states with orjson and everything else with the
library's encoder: whichever writes a state, the library's decoder reads back the same values
the library's own encoder would have given it."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError
from hypothesis import given
from hypothesis import strategies as st

from contracts import KPIDefinition
from services.metrics.application import MetricsApplication
from services.shared.settings import Settings
from services.shared.store import StateTranscoder, _plain, store_environment

INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=5))])
)
SCALARS = (
    st.text()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
    | INSTANTS
)
STATES = st.dictionaries(
    st.text(),
    st.recursive(
        SCALARS,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.dictionaries(st.text(), inner, max_size=4)
        ),
        max_leaves=12,
    ),
    max_size=8,
)


@pytest.fixture(scope="module")
def transcoders(tmp_path_factory: pytest.TempPathFactory) -> tuple[JSONTranscoder, JSONTranscoder]:
    """The metrics store's transcoder, and the library's with the same transcodings."""
    root: Path = tmp_path_factory.mktemp("metrics")
    application = MetricsApplication(env=store_environment(Settings(data_dir=root)))
    ours = application.mapper.transcoder
    assert isinstance(ours, StateTranscoder)
    library = JSONTranscoder()
    application.register_transcodings(library)
    return ours, library


@given(state=STATES)
def test_a_plain_state_reads_back_as_the_library_would_read_its_own(
    transcoders: tuple[JSONTranscoder, JSONTranscoder], state: dict[str, Any]
) -> None:
    ours, library = transcoders
    assert _plain(state), "the strategy makes plain states only"
    written = ours.encode(state)
    assert library.decode(written) == library.decode(library.encode(state))


@pytest.mark.parametrize(
    "value",
    [
        uuid.UUID("12345678-1234-5678-1234-567812345678"),  # orjson would write it untagged
        Decimal("1.25"),
        2**70,  # beyond orjson's integers
        KPIDefinition(
            key="churn",
            name="Churn",
            direction="lower_is_better",
            target=5,
            interval="P1D",
            interval_seconds=86400,
        ),
    ],
    ids=["uuid", "decimal", "big int", "stored model"],
)
def test_other_values_are_written_by_the_library(
    transcoders: tuple[JSONTranscoder, JSONTranscoder], value: Any
) -> None:
    ours, library = transcoders
    state = {"when": datetime(2026, 1, 1, tzinfo=UTC), "nested": [{"value": value}]}
    assert ours.encode(state) == library.encode(state)
    assert ours.decode(ours.encode(state)) == state


def test_nan_and_infinity_are_written_by_the_library(
    transcoders: tuple[JSONTranscoder, JSONTranscoder],
) -> None:
    ours, library = transcoders
    for value in (math.nan, math.inf):
        assert not _plain({"value": value})
        assert ours.encode({"value": value}) == library.encode({"value": value})


def test_an_unregistered_type_is_refused_as_before(
    transcoders: tuple[JSONTranscoder, JSONTranscoder],
) -> None:
    ours, _ = transcoders
    with pytest.raises(TranscodingNotRegisteredError):
        ours.encode({"tags": {"a", "b"}})
