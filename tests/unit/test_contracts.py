"""The integration-event contracts: generated files, upcasting, rejection, readings, periods."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    ALL_TOPICS,
    EVENT_TYPES,
    Aggregation,
    Cadence,
    Direction,
    Envelope,
    GapDetected,
    GapDetectedPayload,
    GapKind,
    GapResolved,
    GapResolvedPayload,
    Health,
    InvalidEvent,
    KeyResultCheckedIn,
    KeyResultCheckedInPayload,
    KeyResultDefinition,
    KeyResultKind,
    KeyResultScored,
    KeyResultScoredPayload,
    KPIDefined,
    KPIDefinition,
    KPIReading,
    KPIRecorded,
    KPIRecordedPayload,
    Level,
    LineageItem,
    ObjectiveArchived,
    ObjectiveArchivedPayload,
    ObjectiveDefinition,
    ObjectiveScored,
    ObjectiveScoredPayload,
    ObjectiveSet,
    PaceStatus,
    derive_reading_id,
    dlq_topic,
    export,
    parse_event,
    parse_period,
    stable_event_id,
)

OCCURRED = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)
OBSERVED = datetime(2026, 10, 2, 12, 0, tzinfo=timezone(timedelta(hours=2)))


def envelope(producer: str, aggregate_id: str, version: int = 1) -> dict[str, Any]:
    """The envelope fields of an example event."""
    return {
        "event_id": stable_event_id(producer, aggregate_id, version),
        "position": 41 + version,
        "aggregate_id": aggregate_id,
        "aggregate_version": version,
        "occurred_at": OCCURRED,
        "actor": "ana",
        "causation_id": "request-7",
        "correlation_id": "okr-planning-2026-q4",
    }


OBJECTIVE = ObjectiveDefinition(
    id="obj-retention",
    title="Customers stay with us",
    owner="ana",
    contributors=["ben"],
    org_unit="sales",
    level=Level.team,
    period=parse_period("2026-Q4"),
    key_results=[
        KeyResultDefinition(
            id="kr-churn",
            title="Churn down to 3 %",
            kind=KeyResultKind.kpi,
            unit="%",
            baseline=5.0,
            target=3.0,
            kpi="churn_rate",
            aggregation=Aggregation.latest,
        ),
        KeyResultDefinition(
            id="kr-survey",
            title="Exit survey live",
            kind=KeyResultKind.milestone,
            checklist=["draft", "launch"],
        ),
    ],
)

EXAMPLES: dict[str, Envelope] = {
    "ObjectiveSet": ObjectiveSet(**envelope("goal", "obj-retention"), payload=OBJECTIVE),
    "ObjectiveArchived": ObjectiveArchived(
        **envelope("goal", "obj-retention", 3),
        payload=ObjectiveArchivedPayload(objective_id="obj-retention", reason="merged"),
    ),
    "KeyResultCheckedIn": KeyResultCheckedIn(
        **envelope("goal", "obj-retention", 2),
        payload=KeyResultCheckedInPayload(
            objective_id="obj-retention",
            key_result_id="kr-survey",
            done=False,
            checklist_done=["draft"],
            confidence=7,
            comment="launch slips a week",
        ),
    ),
    "KPIDefined": KPIDefined(
        **envelope("metrics", "churn_rate"),
        payload=KPIDefinition(
            key="churn_rate",
            name="Monthly churn",
            unit="%",
            direction=Direction.lower_is_better,
            target=3.0,
            warning=4.5,
            interval="P1D",
            interval_seconds=86400.0,
        ),
    ),
    "KPIRecorded": KPIRecorded(
        **envelope("metrics", "churn_rate", 2),
        payload=KPIRecordedPayload(
            kpi="churn_rate",
            value=4.2,
            observed_at=OBSERVED,
            source="billing",
            reading_id="billing-2026-10-02",
            unit="%",
            health=Health.warning,
        ),
    ),
    "KeyResultScored": KeyResultScored(
        **envelope("alignment", "obj-retention/kr-churn"),
        payload=KeyResultScoredPayload(
            objective_id="obj-retention",
            key_result_id="kr-churn",
            score=0.4,
            progress=0.4,
            value=4.2,
            expected=0.02,
            status=PaceStatus.on_track,
            as_of=OBSERVED,
            lineage=[
                LineageItem(
                    producer="metrics",
                    position=43,
                    event_type="KPIRecorded",
                    reading_id="billing-2026-10-02",
                    observed_at=OBSERVED,
                )
            ],
        ),
    ),
    "ObjectiveScored": ObjectiveScored(
        **envelope("alignment", "obj-retention"),
        payload=ObjectiveScoredPayload(
            objective_id="obj-retention",
            score=0.7,
            expected=1.0,
            status=PaceStatus.at_risk,
            as_of=OCCURRED,
            final=True,
            success=True,
        ),
    ),
    "GapDetected": GapDetected(
        **envelope("alignment", "gap-1"),
        payload=GapDetectedPayload(
            gap_id="gap-1",
            kind=GapKind.kpi_unaddressed,
            subject="churn_rate",
            owner="ana",
            period="2026-Q4",
            message="No key result addresses churn_rate",
        ),
    ),
    "GapResolved": GapResolved(
        **envelope("alignment", "gap-1", 2),
        payload=GapResolvedPayload(
            gap_id="gap-1",
            kind=GapKind.kpi_unaddressed,
            subject="churn_rate",
            reason="kr-churn now measures it",
        ),
    ),
}


def raw_example(event_type: str) -> dict[str, Any]:
    """An example event as the JSON object a consumer reads."""
    raw: dict[str, Any] = json.loads(EXAMPLES[event_type].to_json())
    return raw


# -- generated files ---------------------------------------------------------------------------


def test_committed_schemas_and_asyncapi_match_the_models() -> None:
    stale = export.stale_files(export.generated_files())

    assert not stale, (
        "contracts/schemas or contracts/asyncapi.yaml are out of date with the models: "
        f"{[str(path.name) for path in stale]}; run `python -m contracts.export` and commit them"
    )


def test_export_is_deterministic() -> None:
    assert export.asyncapi_document() == export.asyncapi_document()


def test_check_reports_stale_files_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = export.ASYNCAPI_PATH.read_bytes()
    changed = {**export.generated_files(), export.ASYNCAPI_PATH: "asyncapi: 3.0.0\n"}
    monkeypatch.setattr(export, "generated_files", lambda: changed)

    assert export.main(["--check"]) == 1
    assert "contracts/asyncapi.yaml" in capsys.readouterr().err
    assert export.ASYNCAPI_PATH.read_bytes() == committed


def test_every_contract_has_a_schema_file_with_id_and_title() -> None:
    names = {path.name for path in export.SCHEMAS_DIR.glob("*.json")}
    expected = {
        f"{name}.v{model.model_fields['schema_version'].default}.json"
        for name, model in EVENT_TYPES.items()
    } | {"KPIReading.json"}
    assert names == expected
    objective_set = json.loads((export.SCHEMAS_DIR / "ObjectiveSet.v2.json").read_text())
    assert objective_set["$id"] == "ObjectiveSet.v2.json"
    assert objective_set["title"] == "ObjectiveSet"
    assert objective_set["properties"]["schema_version"]["const"] == 2


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    """The committed AsyncAPI document (equal to the generated one, see the drift test)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(export.ASYNCAPI_PATH.read_text(), Loader=loader)
    return document


def test_asyncapi_lists_every_topic_its_dlq_and_every_event_type(asyncapi: dict[str, Any]) -> None:
    document = asyncapi
    addresses = {channel["address"] for channel in document["channels"].values()}
    schemas = document["components"]["schemas"]

    assert document["asyncapi"] == "3.0.0"
    assert addresses == {*ALL_TOPICS, *(dlq_topic(topic) for topic in ALL_TOPICS)}
    assert set(EVENT_TYPES) | {"KPIReading"} <= set(schemas)
    for topic in ALL_TOPICS:
        models = export.events_on(topic)
        if len(models) > 1:
            union = schemas[f"{topic}:Message:Payload"]
            assert union["discriminator"] == "event_type"
            assert [item["$ref"].rsplit("/", 1)[1] for item in union["oneOf"]] == [
                model.__name__ for model in models
            ]


def test_asyncapi_describes_the_dead_letter_record(asyncapi: dict[str, Any]) -> None:
    messages = asyncapi["components"]["messages"]
    dead_letter = messages[f"{dlq_topic('goal.events')}:Message"]

    assert dead_letter["payload"]["$ref"] == "#/components/schemas/DeadLetter"
    assert dead_letter["contentType"] == "application/octet-stream"
    assert dead_letter["headers"]["required"] == [
        "dlq.reason",
        "dlq.topic",
        "dlq.partition",
        "dlq.offset",
        "dlq.consumer",
    ]


# -- reading events ----------------------------------------------------------------------------


def test_version_1_objective_set_is_upcast_from_its_period_label() -> None:
    raw = raw_example("ObjectiveSet") | {"schema_version": 1}
    raw["payload"] = raw["payload"] | {"period": "2026-Q4"}

    event = parse_event(json.dumps(raw).encode())

    assert isinstance(event, ObjectiveSet)
    assert event.schema_version == 2
    assert event.payload.period.label == "2026-Q4"
    assert event.payload.period.cadence is Cadence.quarterly
    assert event.payload.period.start == date(2026, 10, 1)
    assert event.payload.period.end == date(2026, 12, 31)


def _without(raw: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key != field}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        pytest.param(
            json.dumps(raw_example("ObjectiveArchived") | {"schema_version": 2}).encode(),
            "ObjectiveArchived schema_version 2 is newer",
            id="future-schema-version",
        ),
        pytest.param(
            json.dumps(raw_example("ObjectiveArchived") | {"event_type": "ObjectiveDeleted"}),
            "unknown event_type 'ObjectiveDeleted'",
            id="unknown-event-type",
        ),
        pytest.param(b"\x00not json{", "not JSON", id="not-json"),
        pytest.param(b"[1, 2]", "expected a JSON object, got list", id="not-an-object"),
        pytest.param(
            json.dumps(_without(raw_example("ObjectiveArchived"), "actor")).encode(),
            "actor: Field required",
            id="missing-envelope-field",
        ),
        pytest.param(
            json.dumps(
                raw_example("ObjectiveSet")
                | {
                    "schema_version": 1,
                    "payload": raw_example("ObjectiveSet")["payload"] | {"period": "2026-Q5"},
                }
            ).encode(),
            "payload.period: unknown period '2026-Q5'",
            id="v1-bad-period-label",
        ),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(message: bytes | str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as rejected:
        parse_event(message)

    assert reason in rejected.value.reason


LAX_BUT_WRONG: dict[str, dict[str, Any]] = {
    "version-true": {"schema_version": True},
    "version-float": {"schema_version": 1.0},
    "no-producer": {"producer": None},
    "position-beyond-64-bits": {"position": 2**63},
    "overflowing-instant": {"occurred_at": "9999-12-31T23:30:00-01:00"},
    "escaped-overflowing-instant": {"occurred_at": "\\u0039999-12-31T23:30:00-01:00"},
}


@pytest.mark.parametrize("change", sorted(LAX_BUT_WRONG))
@pytest.mark.parametrize("hint", sorted(EVENT_TYPES))
def test_the_event_type_hint_never_lets_through_what_the_full_parse_refuses(
    change: str, hint: str
) -> None:
    raw = raw_example("ObjectiveArchived") | LAX_BUT_WRONG[change]
    message = json.dumps({k: v for k, v in raw.items() if v is not None}).encode()
    if change == "escaped-overflowing-instant":  # json.dumps would escape the backslash
        message = message.replace(b"\\\\u", b"\\u")
    with pytest.raises(InvalidEvent) as without_hint:
        parse_event(message)

    with pytest.raises(InvalidEvent) as with_hint:
        parse_event(message, hint)

    assert with_hint.value.reason == without_hint.value.reason


def test_examples_cover_every_event_type() -> None:
    assert set(EXAMPLES) == set(EVENT_TYPES)
    assert all(type(EXAMPLES[name]) is EVENT_TYPES[name] for name in EXAMPLES)


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_event_survives_a_round_trip(event_type: str) -> None:
    event = EXAMPLES[event_type]

    parsed = parse_event(event.to_json())
    hinted = parse_event(event.to_json(), event_type)

    assert type(parsed) is type(event)
    assert parsed == event == hinted
    assert parsed.key() == event.aggregate_id.encode()


# -- inbound readings --------------------------------------------------------------------------


def test_reading_id_is_derived_when_absent() -> None:
    reading = KPIReading(kpi="churn_rate", value=4.2, observed_at=OBSERVED, source="billing")

    assert reading.reading_id == derive_reading_id("churn_rate", "billing", OBSERVED, 4.2)
    assert reading.reading_id is not None
    assert len(reading.reading_id) == 32
    again = KPIReading.model_validate_json(reading.model_dump_json(exclude={"reading_id"}))
    assert again.reading_id == reading.reading_id


def test_given_reading_id_is_kept() -> None:
    reading = KPIReading(
        kpi="churn_rate", value=4.2, observed_at=OBSERVED, source="billing", reading_id="r-1"
    )

    assert reading.reading_id == "r-1"


def test_reading_id_is_the_same_for_the_same_instant_in_any_timezone() -> None:
    in_utc = OBSERVED.astimezone(UTC)
    in_new_york = OBSERVED.astimezone(timezone(timedelta(hours=-4)))

    assert derive_reading_id("churn_rate", "billing", in_utc, 4.2) == derive_reading_id(
        "churn_rate", "billing", in_new_york, 4.2
    )
    assert derive_reading_id("churn_rate", "billing", in_utc, 4.2) != derive_reading_id(
        "churn_rate", "billing", in_utc + timedelta(seconds=1), 4.2
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_reading_rejects_nan_and_infinity(value: float) -> None:
    with pytest.raises(ValidationError, match="value"):
        KPIReading(kpi="churn_rate", value=value, observed_at=OBSERVED, source="billing")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_reading_rejects_nan_and_infinity_in_json(literal: str) -> None:
    message = (
        f'{{"kpi": "churn_rate", "value": {literal}, '
        '"observed_at": "2026-10-02T12:00:00Z", "source": "billing"}'
    )
    with pytest.raises(ValidationError, match="value"):
        KPIReading.model_validate_json(message)


def test_reading_rejects_a_naive_datetime() -> None:
    with pytest.raises(ValidationError, match="observed_at"):
        KPIReading(
            kpi="churn_rate", value=4.2, observed_at=datetime(2026, 10, 2, 12), source="billing"
        )
    with pytest.raises(ValidationError, match="observed_at"):
        KPIReading.model_validate_json(
            '{"kpi": "churn_rate", "value": 4.2, "observed_at": "2026-10-02T12:00:00",'
            ' "source": "billing"}'
        )


# -- periods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cadence", "start", "end"),
    [
        ("2026", Cadence.annual, date(2026, 1, 1), date(2026, 12, 31)),
        ("2026-Q1", Cadence.quarterly, date(2026, 1, 1), date(2026, 3, 31)),
        ("2026-Q4", Cadence.quarterly, date(2026, 10, 1), date(2026, 12, 31)),
        ("2024-02", Cadence.monthly, date(2024, 2, 1), date(2024, 2, 29)),
        ("2025-02", Cadence.monthly, date(2025, 2, 1), date(2025, 2, 28)),
        (
            {"start": "2026-01-15", "end": "2026-03-15"},
            Cadence.custom,
            date(2026, 1, 15),
            date(2026, 3, 15),
        ),
    ],
)
def test_parse_period(
    value: str | dict[str, str], cadence: Cadence, start: date, end: date
) -> None:
    period = parse_period(value)

    assert (period.cadence, period.start, period.end) == (cadence, start, end)


def test_custom_period_label_names_its_dates() -> None:
    period = parse_period({"start": date(2026, 1, 15), "end": date(2026, 3, 15)})

    assert period.label == "2026-01-15..2026-03-15"


def test_period_ending_before_it_starts_is_rejected() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        parse_period({"start": "2026-03-15", "end": "2026-01-15"})


@pytest.mark.parametrize(
    "label", ["", "garbage", "2026-Q5", "2026-Q0", "2026-13", "26", "Q4 2026", "2026-q4"]
)
def test_garbage_period_label_is_rejected(label: str) -> None:
    with pytest.raises(ValueError, match="unknown period"):
        parse_period(label)


@pytest.mark.parametrize(
    "bounds",
    [{"start": "2026-01-01"}, {"end": "2026-01-01"}, {"start": "soon", "end": "2026-01-01"}],
)
def test_garbage_custom_period_is_rejected(bounds: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"custom period needs|isoformat"):
        parse_period(bounds)


@given(year=st.integers(1900, 2100), quarter=st.integers(1, 4))
def test_a_quarter_starts_before_it_ends(year: int, quarter: int) -> None:
    period = parse_period(f"{year}-Q{quarter}")

    assert period.start <= period.end
    assert period.start.year == period.end.year == year


@given(year=st.integers(1900, 2100))
def test_the_four_quarters_tile_the_year(year: int) -> None:
    quarters = [parse_period(f"{year}-Q{quarter}") for quarter in range(1, 5)]

    assert quarters[0].start == date(year, 1, 1)
    assert quarters[-1].end == date(year, 12, 31)
    for previous, following in itertools.pairwise(quarters):
        assert following.start == previous.end + timedelta(days=1)
    days = sum((quarter.end - quarter.start).days + 1 for quarter in quarters)
    assert days == (date(year + 1, 1, 1) - date(year, 1, 1)).days
