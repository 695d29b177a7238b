"""Reading integration events: look up the event type, upcast old versions, validate.

A consumer never breaks on an event from an older producer: every older ``schema_version``
has an upcaster that rewrites the raw message one version up, until the current one.
A newer version than this code knows is an error (it goes to the DLQ), never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from contracts.alignment import (
    GapDetected,
    GapResolved,
    KeyResultScored,
    ObjectiveScored,
)
from contracts.envelope import Envelope
from contracts.goal import KeyResultCheckedIn, ObjectiveArchived, ObjectiveSet
from contracts.metrics import KPIDefined, KPIRecorded
from contracts.periods import parse_period

EVENT_TYPES: dict[str, type[Envelope]] = {
    model.model_fields["event_type"].default: model
    for model in (
        ObjectiveSet,
        ObjectiveArchived,
        KeyResultCheckedIn,
        KPIDefined,
        KPIRecorded,
        KeyResultScored,
        ObjectiveScored,
        GapDetected,
        GapResolved,
    )
}

#: Largest position and aggregate version: stores keep them as signed 64-bit integers (SQLite
#: INTEGER, PostgreSQL BIGINT), and one larger would fail the commit of its whole batch.
MAX_POSITION = 2**63 - 1

RawEvent = dict[str, Any]
Upcaster = Callable[[RawEvent], RawEvent]


class InvalidEvent(ValueError):
    """A message that is not a valid integration event.

    ``reason`` says why, for people; ``kind`` is a short fixed code (a bounded metric label).
    """

    def __init__(self, reason: str, kind: str = "invalid_fields") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def current_version(event_type: str) -> int:
    default = EVENT_TYPES[event_type].model_fields["schema_version"].default
    assert isinstance(default, int)
    return default


def _objective_set_v1_to_v2(raw: RawEvent) -> RawEvent:
    """Version 1 carried only the period label ("2026-Q4"): derive its cadence and dates."""
    payload = raw.get("payload")
    if not isinstance(payload, dict):
        return raw | {"schema_version": 2}  # validation reports the bad payload
    period = payload.get("period")
    if isinstance(period, str):
        try:
            payload = payload | {"period": parse_period(period).model_dump(mode="json")}
        except ValueError as error:
            raise InvalidEvent(f"payload.period: {error}", "invalid_fields") from None
    return raw | {"payload": payload, "schema_version": 2}


#: (event_type, from_version) -> upcaster producing from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("ObjectiveSet", 1): _objective_set_v1_to_v2,
}


def upcast(raw: RawEvent) -> RawEvent:
    """Rewrite a raw event of an older schema version into the current one."""
    if "event_type" not in raw:
        raise InvalidEvent("missing event_type", "unknown_event_type")
    if "schema_version" not in raw:
        raise InvalidEvent("missing schema_version", "bad_schema_version")
    event_type = raw.get("event_type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise InvalidEvent(f"unknown event_type {event_type!r}", "unknown_event_type")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidEvent(
            f"schema_version must be a positive integer, got {version!r}", "bad_schema_version"
        )
    latest = current_version(event_type)
    if version > latest:
        raise InvalidEvent(
            f"{event_type} schema_version {version} is newer than this consumer knows ({latest})",
            "future_schema_version",
        )
    while version < latest:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise InvalidEvent(
                f"no upcaster for {event_type} from schema_version {version}", "no_upcaster"
            )
        raw = step(raw)
        version = raw["schema_version"]
    return raw


def parse_event(message: bytes | str | RawEvent, event_type: str | None = None) -> Envelope:
    """Decode, upcast and validate one integration event; raises ``InvalidEvent``.

    ``event_type`` (the message's header, when it has one) is a hint that lets a message of
    the current schema version be validated straight from its bytes, about three times
    faster. It is only a hint: the model's fixed event type and version must match the
    message, and anything the direct way refuses goes the full way, which says why."""
    if event_type in EVENT_TYPES and isinstance(message, bytes):
        event = _parse_current(message, EVENT_TYPES[event_type])
        if event is not None:
            return event
    if isinstance(message, dict):
        raw = message
    elif not message or message.isspace():
        raise InvalidEvent("empty message", "not_json")
    else:
        try:
            # Not json.loads: it lets through lone surrogates (which no store can encode) and
            # raises RecursionError or a bare ValueError on deep nesting and endless numbers.
            raw = from_json(message)
        except ValueError as error:
            raise InvalidEvent(f"not JSON: {error}", "not_json") from None
    if not isinstance(raw, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(raw).__name__}", "not_json")
    raw = upcast(raw)
    if "producer" not in raw:  # each class has a default, but the message must say it
        raise InvalidEvent("producer: Field required")
    model = EVENT_TYPES[raw["event_type"]]
    try:
        event = model.model_validate(raw)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None
    for name in ("position", "aggregate_version"):
        if getattr(event, name) > MAX_POSITION:
            raise InvalidEvent(f"{name}: must be at most {MAX_POSITION} (a signed 64-bit integer)")
    _check_instants(event, "")
    return event


def _parse_current(message: bytes, model: type[Envelope]) -> Envelope | None:
    """The event validated from its bytes as ``model`` (current version), or None when that
    fails or when the checks of the full way could refuse it."""
    try:
        event = model.model_validate_json(message, strict=True)
    except ValidationError:
        return None
    if "producer" not in event.model_fields_set:  # the class has a default; messages must say
        return None
    if event.position > MAX_POSITION or event.aggregate_version > MAX_POSITION:
        return None
    # An instant can overflow only in year 1 or 9999, written so or hidden by an escape (a
    # backslash is looked for, not ``\\u``: one byte is found several times faster).
    if b"\\" in message or b"0001-" in message or b"9999-" in message:
        _check_instants(event, "")
    return event


def _check_instants(value: Any, path: str) -> None:
    """Refuse an instant that exists only in its own time zone (year 1 at +01:00, year 9999 at
    -01:00): in UTC it overflows, and so does every comparison or conversion a consumer makes."""
    if isinstance(value, datetime):
        if value.year in (1, 9999):  # only these can leave the range
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise InvalidEvent(f"{path}: out of range once converted to UTC") from None
    elif isinstance(type(value), _MODEL_CLASS):
        for name, field in value.__dict__.items():  # the fields' values, without getattr
            if isinstance(field, _CONTAINERS) or isinstance(type(field), _MODEL_CLASS):
                _check_instants(field, f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_instants(item, f"{path}.{index}")


#: What ``_check_instants`` looks into. A model is told by its class's metaclass: through
#: ABCMeta, ``isinstance(x, BaseModel)`` made the check cost half as much as the parse itself.
_MODEL_CLASS = type(BaseModel)
_CONTAINERS = (datetime, list)


def describe_validation_error(error: ValidationError) -> str:
    """One line per wrong field: ``payload.period.start: Input should be a valid date``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '<root>'}: "
        + item["msg"].removeprefix("Value error, ")
        for item in error.errors(include_url=False)
    )


__all__ = [
    "EVENT_TYPES",
    "MAX_POSITION",
    "UPCASTERS",
    "InvalidEvent",
    "current_version",
    "describe_validation_error",
    "parse_event",
    "upcast",
]
