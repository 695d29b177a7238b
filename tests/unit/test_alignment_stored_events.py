"""Alignment's domain events as older versions stored them still load: each event class that
changed shape has a ``class_version`` and upcasts the old state (the library's mechanism)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from contracts import KeyResultKind
from services.alignment.application import AlignmentApplication
from services.alignment.domain import KPITrack, ObjectiveTrack, from_micros, to_micros
from services.alignment.scoring import ReadingRef, WindowStats
from services.shared.store import store_environment
from tests.stores import Store
from tests.unit.test_alignment_evaluation import definition, kr

ARRIVED = datetime(2026, 3, 1, 12, tzinfo=UTC)
OBSERVED = datetime(2026, 3, 1, 9, tzinfo=UTC)
RECORDED = datetime(2026, 3, 1, 11, 30, tzinfo=UTC)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[AlignmentApplication]:
    application = AlignmentApplication(
        env=store_environment(Store("sqlite").settings("alignment", tmp_path))
    )
    yield application
    application.close()


def stored_as_before(
    service: AlignmentApplication, aggregate: Aggregate, make_old: Callable[[dict[str, Any]], None]
) -> None:
    """Store ``aggregate``'s pending events, the last as an older version wrote it: its state
    with the class version ``make_old`` gives it (absent: the first), changed by it."""
    *events, last = aggregate.collect_events()
    stored = [service.mapper.to_stored_event(e) for e in [*events, last]]
    state = service.mapper.transcoder.decode(stored[-1].state)
    assert state.pop("class_version") > 1
    make_old(state)
    stored[-1] = StoredEvent(
        stored[-1].originator_id,
        stored[-1].originator_version,
        stored[-1].topic,
        service.mapper.transcoder.encode(state),
    )
    service.recorder.insert_events(stored)


def objective() -> ObjectiveTrack:
    made = definition("obj-old", [kr("kr-1", KeyResultKind.kpi, kpi="kpi.sales", target=10.0)])
    return ObjectiveTrack(made.id, made.model_dump(mode="json"), 1)


def test_an_archival_stored_before_archivals_were_dated_loads_undated(
    service: AlignmentApplication,
) -> None:
    track = objective()
    track.archive(2, ARRIVED)
    stored_as_before(service, track, lambda state: state.pop("archived_at"))
    loaded: ObjectiveTrack = service.repository.get(track.id)
    assert not loaded.active
    assert loaded.archived_at is None


def applied_readings(
    service: AlignmentApplication, make_old: Callable[[dict[str, Any]], None]
) -> KPITrack.ReadingsApplied:
    """A batch of one reading applied to a KPI track, stored as ``make_old`` makes it, read back."""
    kpi = KPITrack("kpi.sales", None)
    kpi.apply_readings(
        [("r-1", 4.0, to_micros(OBSERVED), 7, "crm", "unhealthy", to_micros(RECORDED))], ARRIVED
    )
    stored_as_before(service, kpi, make_old)
    assert service.repository.get(kpi.id).readings == 1
    (applied,) = (e for e in service.events.get(kpi.id) if isinstance(e, KPITrack.ReadingsApplied))
    return applied


def as_objects(state: dict[str, Any]) -> None:
    """Readings as version 2 stored them: objects with ISO instants."""
    state["class_version"] = 2
    state["readings"] = [
        {
            "reading_id": reading_id,
            "value": value,
            "observed_at": from_micros(observed).isoformat(),
            "position": position,
            "source": source,
            "health": health,
            "recorded_at": from_micros(recorded).isoformat(),
        }
        for reading_id, value, observed, position, source, health, recorded in state["readings"]
    ]


def test_readings_stored_as_objects_with_iso_instants_load_as_rows(
    service: AlignmentApplication,
) -> None:
    applied = applied_readings(service, as_objects)
    assert [tuple(row) for row in applied.readings] == [
        ("r-1", 4.0, to_micros(OBSERVED), 7, "crm", "unhealthy", to_micros(RECORDED))
    ]
    assert list(applied.references()) == [(ReadingRef("r-1", 4.0, OBSERVED, 7, "crm"), RECORDED)]


def test_readings_stored_before_they_kept_source_and_recording_time_load_with_the_batchs(
    service: AlignmentApplication,
) -> None:
    def make_old(state: dict[str, Any]) -> None:
        as_objects(state)
        del state["class_version"]
        del state["readings"][0]["source"], state["readings"][0]["recorded_at"]

    applied = applied_readings(service, make_old)
    assert list(applied.references()) == [(ReadingRef("r-1", 4.0, OBSERVED, 7, ""), ARRIVED)]


def test_a_rows_instants_are_exact_microseconds_whatever_the_offset() -> None:
    offset = timezone(timedelta(hours=-5))
    instant = datetime(2026, 3, 1, 4, 0, 0, 123457, tzinfo=offset)
    assert from_micros(to_micros(instant)) == instant
    assert from_micros(to_micros(instant)).utcoffset() == timedelta(0)
    assert to_micros(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1


def test_evaluations_stored_before_readings_had_a_source_load_with_an_unknown_one(
    service: AlignmentApplication,
) -> None:
    track = objective()
    stats = WindowStats()
    stats.add(ReadingRef("r-1", 4.0, OBSERVED, 7, "crm"))
    track.trigger_event(
        ObjectiveTrack.KeyResultEvaluated,
        objective_id=track.objective_id,
        key_result_id="kr-1",
        stats=stats.as_dict(),
        value=4.0,
        progress=0.4,
        score=0.4,
        expected=0.2,
        status="on_track",
        as_of=ARRIVED,
        lineage=[],
        published=True,
    )

    def make_old(state: dict[str, Any]) -> None:
        for extreme in ("low", "high", "latest"):
            del state["stats"][extreme]["source"]

    stored_as_before(service, track, make_old)
    found: ObjectiveTrack = service.repository.get(track.id)
    loaded = found.stats["kr-1"]
    assert loaded.latest == ReadingRef("r-1", 4.0, OBSERVED, 7, "")
    assert (loaded.count, loaded.low, loaded.high) == (1, loaded.latest, loaded.latest)
