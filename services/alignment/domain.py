"""The alignment graph as aggregates (no I/O).

- ``ObjectiveTrack``: one per objective. It mirrors the goal events it applied (definition,
  check-ins, archive) and records each evaluation of its key results and of itself. An
  evaluation carries the window statistics of its KPI readings, so replaying the track
  restores them; it is *published* (as ``KeyResultScored`` / ``ObjectiveScored``) only when
  a score or status changed.
- ``KPITrack``: one per KPI: its definition, health and the readings applied (one event per
  KPI per batch), kept so that a key result linked later can be scored over past readings.
- ``GapBoard``: the open gaps; one event per gap opened or closed.
"""

from __future__ import annotations

import copy
import functools
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate, event

from contracts import (
    Health,
    KPIDefinition,
    ObjectiveDefinition,
    ObjectiveStatus,
    PaceStatus,
)
from services.alignment.scoring import ReadingRef, WindowStats
from services.shared.kpi_health import UnhealthyStreak, extend_streak

NAMESPACE = uuid.UUID("3a0f4b52-6f3d-4e8a-9c51-7d2e8b1f4c60")
GAP_BOARD_ID = uuid.uuid5(NAMESPACE, "gap-board")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: A reading as ``KPITrack.ReadingsApplied`` stores it, a row rather than an object: reading
#: id, value, observed at, position in metrics.events, source, the KPI's health after it, and
#: when metrics recorded it. Instants are whole microseconds since the epoch (``to_micros``):
#: exact, and written, read and compared for a fraction of what ISO text costs, on the path
#: every reading takes. Read back from the store, a row is a list.
StoredReading = tuple[str, float, int, int, str, str, int]


def to_micros(instant: datetime) -> int:
    """An aware instant as whole microseconds since the epoch."""
    return (instant - EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(0, 0, micros)


def stats_from_dict(raw: dict[str, Any]) -> WindowStats:
    def ref(item: dict[str, Any] | None) -> ReadingRef | None:
        if item is None:
            return None
        observed = item["observed_at"]
        return ReadingRef(
            item["reading_id"],
            item["value"],
            observed if isinstance(observed, datetime) else datetime.fromisoformat(observed),
            item["position"],
            item["source"],
        )

    return WindowStats(
        raw["count"], list(raw["partials"]), ref(raw["low"]), ref(raw["high"]), ref(raw["latest"])
    )


@functools.cache
def _track_id(kind: str, key: str) -> uuid.UUID:
    # Ids are looked up for every track on every batch (gaps look at all of them): a uuid5
    # each time cost more than the lookup itself. The catalogue bounds the memo.
    return uuid.uuid5(NAMESPACE, f"{kind}/{key}")


class ObjectiveTrack(Aggregate):
    @staticmethod
    def create_id(objective_id: str) -> uuid.UUID:
        return _track_id("objective", objective_id)

    class Defined(Aggregate.Created):
        objective_id: str
        definition: dict[str, Any]
        position: int

    class Redefined(Aggregate.Event):
        definition: dict[str, Any]
        position: int

    class CheckedIn(Aggregate.Event):
        key_result_id: str
        value: float | None
        done: bool | None
        checklist_done: list[str] | None
        confidence: int | None
        position: int

    class Archived(Aggregate.Event):
        position: int
        #: When the goal service archived it (None: archived before archivals were dated).
        archived_at: datetime | None

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Archivals stored before they were dated."""
            state["archived_at"] = None

    # The events stored in volume (evaluations, KPITrack's readings) apply themselves: a
    # decorated method costs more, live and on replay (the library matches the event's
    # fields to the method's parameters on every call).
    class KeyResultEvaluated(Aggregate.Event):
        objective_id: str
        key_result_id: str
        stats: dict[str, Any] | None
        value: float | None
        progress: float
        score: float
        expected: float
        status: str
        as_of: datetime
        lineage: list[dict[str, Any]]
        published: bool

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Evaluations stored before readings had a source: the statistics' readings get
            an unknown (empty) one. Their lineage stays as it was: it cites what was known."""
            stats = state["stats"]
            for extreme in ("low", "high", "latest") if stats else ():
                if stats[extreme] is not None:
                    stats[extreme].setdefault("source", "")

        def apply(self, aggregate: Any) -> None:
            if self.stats is not None:
                aggregate.stats[self.key_result_id] = stats_from_dict(self.stats)
            aggregate.evaluations[self.key_result_id] = {
                "value": self.value,
                "progress": self.progress,
                "score": self.score,
                "expected": self.expected,
                "status": self.status,
                "as_of": self.as_of.isoformat(),
                "lineage": self.lineage,
            }

    class ObjectiveEvaluated(Aggregate.Event):
        objective_id: str
        score: float
        expected: float
        status: str
        as_of: datetime
        final: bool
        success: bool | None
        published: bool

        def apply(self, aggregate: Any) -> None:
            aggregate.evaluation = {
                "score": self.score,
                "expected": self.expected,
                "status": self.status,
                "as_of": self.as_of.isoformat(),
                "final": self.final,
                "success": self.success,
            }

    @event(Defined)
    def __init__(self, objective_id: str, definition: dict[str, Any], position: int) -> None:
        self.objective_id = objective_id
        self.definition = ObjectiveDefinition.model_validate(definition)
        #: Position in goal.events of the definition in force: scores cite it for auditors.
        self.definition_position = position
        #: key result id -> its latest check-in (value, done, checklist_done, confidence).
        self.check_ins: dict[str, dict[str, Any]] = {}
        #: key result id -> statistics of its KPI's readings in the period (kpi kind).
        self.stats: dict[str, WindowStats] = {}
        #: key result id -> its last evaluation (as stored in the event, JSON-friendly).
        self.evaluations: dict[str, dict[str, Any]] = {}
        self.evaluation: dict[str, Any] | None = None
        #: When the objective was archived: it stays scored over the readings recorded
        #: before then, whenever they arrive (None: active, or archived before this was kept).
        self.archived_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.definition.status is ObjectiveStatus.active

    def __deepcopy__(self, memo: dict[int, Any]) -> ObjectiveTrack:
        """What the repository's cache hands out on every read: a copy independent of the
        cached track wherever the track changes in place (its tables and window statistics),
        sharing what is only ever replaced (check-ins, evaluations with their lineage, the
        frozen definition). A generic deep copy of the lineage was most of the consumer's
        time."""
        clone = copy.copy(self)
        clone.check_ins = dict(self.check_ins)
        clone.stats = {key: stats.copy() for key, stats in self.stats.items()}
        clone.evaluations = dict(self.evaluations)
        clone._pending_events = list(self._pending_events)
        return clone

    @event(Redefined)
    def redefine(self, definition: dict[str, Any], position: int) -> None:
        self.definition = ObjectiveDefinition.model_validate(definition)
        self.definition_position = position
        kept = {kr.id for kr in self.definition.key_results}
        for table in (self.check_ins, self.stats, self.evaluations):
            for key_result_id in set(table) - kept:
                del table[key_result_id]

    @event(CheckedIn)
    def check_in(
        self,
        key_result_id: str,
        value: float | None,
        done: bool | None,
        checklist_done: list[str] | None,
        confidence: int | None,
        position: int,
    ) -> None:
        previous = self.check_ins.get(key_result_id, {})
        self.check_ins[key_result_id] = {
            # A check-in of confidence alone keeps the value checked in before.
            "value": value if value is not None else previous.get("value"),
            "done": done if done is not None else previous.get("done"),
            "checklist_done": (
                checklist_done if checklist_done is not None else previous.get("checklist_done")
            ),
            "confidence": confidence if confidence is not None else previous.get("confidence"),
            "position": position,
        }

    @event(Archived)
    def archive(self, position: int, archived_at: datetime | None) -> None:
        self.definition = self.definition.model_copy(update={"status": ObjectiveStatus.archived})
        self.archived_at = archived_at

    def record_key_result(
        self,
        key_result_id: str,
        *,
        stats: WindowStats | None,
        value: float | None,
        progress: float,
        score: float,
        expected: float,
        status: PaceStatus,
        as_of: datetime,
        lineage: list[dict[str, Any]],
    ) -> bool:
        """Record an evaluation; returns whether it is published (score or status changed)."""
        before = self.evaluations.get(key_result_id)
        published = before is None or (before["score"], before["status"]) != (score, status.value)
        self.trigger_event(
            self.KeyResultEvaluated,
            objective_id=self.objective_id,
            key_result_id=key_result_id,
            stats=stats.as_dict() if stats else None,
            value=value,
            progress=progress,
            score=score,
            expected=expected,
            status=status.value,
            as_of=as_of,
            lineage=lineage,
            published=published,
        )
        return published

    def record_objective(
        self,
        *,
        score: float,
        expected: float,
        status: PaceStatus,
        as_of: datetime,
        final: bool,
        success: bool | None,
    ) -> bool:
        before = self.evaluation
        published = before is None or (before["score"], before["status"], before["final"]) != (
            score,
            status.value,
            final,
        )
        if published:
            self.trigger_event(
                self.ObjectiveEvaluated,
                objective_id=self.objective_id,
                score=score,
                expected=expected,
                status=status.value,
                as_of=as_of,
                final=final,
                success=success,
                published=True,
            )
        return published


class KPITrack(Aggregate):
    @staticmethod
    def create_id(key: str) -> uuid.UUID:
        return _track_id("kpi", key)

    class Defined(Aggregate.Created):
        key: str
        definition: dict[str, Any] | None

    class Redefined(Aggregate.Event):
        definition: dict[str, Any]

    class ReadingsApplied(Aggregate.Event):
        #: The readings of one batch, in arrival order.
        readings: list[StoredReading]
        arrived_at: datetime

        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Readings stored before each kept its source and when the metrics service
            recorded it: an unknown (empty) source, and the batch's arrival for the latter."""
            for reading in state["readings"]:
                reading.setdefault("source", "")
                reading.setdefault("recorded_at", state["arrived_at"].isoformat())

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            """Readings stored as objects with ISO instants: rows (``StoredReading``)."""
            state["readings"] = [
                [
                    reading["reading_id"],
                    reading["value"],
                    to_micros(datetime.fromisoformat(reading["observed_at"])),
                    reading["position"],
                    reading["source"],
                    reading["health"],
                    to_micros(datetime.fromisoformat(reading["recorded_at"])),
                ]
                for reading in state["readings"]
            ]

        def apply(self, aggregate: Any) -> None:
            aggregate.fold(self.readings, self.arrived_at)

        def references(self) -> Iterator[tuple[ReadingRef, datetime]]:
            """Each reading applied, with when the metrics service recorded it."""
            for reading_id, value, observed, position, source, _, recorded in self.readings:
                yield (
                    ReadingRef(reading_id, value, from_micros(observed), position, source),
                    from_micros(recorded),
                )

    @event(Defined)
    def __init__(self, key: str, definition: dict[str, Any] | None) -> None:
        self.key = key
        self.definition = KPIDefinition.model_validate(definition) if definition else None
        self.health_state: str | None = None
        #: When the current value was observed (microseconds since the epoch).
        self.latest_observed: int | None = None
        self.last_arrival: datetime | None = None
        self.readings = 0
        #: The run of unhealthy current values, to tell a stagnant KPI (see kpi_health).
        self.streak: UnhealthyStreak | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> KPITrack:
        """As ``ObjectiveTrack``'s: only the unhealthy streak changes in place."""
        clone = copy.copy(self)
        if self.streak is not None:
            clone.streak = self.streak.model_copy(update={"buckets": list(self.streak.buckets)})
        clone._pending_events = list(self._pending_events)
        return clone

    @property
    def health(self) -> Health | None:
        return Health(self.health_state) if self.health_state else None

    @event(Redefined)
    def redefine(self, definition: dict[str, Any]) -> None:
        self.definition = KPIDefinition.model_validate(definition)

    def apply_readings(self, readings: list[StoredReading], arrived_at: datetime) -> None:
        self.trigger_event(self.ReadingsApplied, readings=readings, arrived_at=arrived_at)

    def fold(self, readings: Sequence[StoredReading], arrived_at: datetime) -> None:
        """The effect of ``ReadingsApplied``: health, latest observation and streak."""
        self.readings += len(readings)
        self.last_arrival = arrived_at
        latest = self.latest_observed
        for _, value, observed, _, _, health, _ in readings:
            # Health travels with each reading: that of the KPI's current value after it.
            if latest is None or observed >= latest:
                latest = observed
                self.health_state = health
                self.streak = extend_streak(self.streak, health, value, from_micros(observed))
        self.latest_observed = latest


class GapBoard(Aggregate):
    @staticmethod
    def create_id() -> uuid.UUID:
        return GAP_BOARD_ID

    class Opened(Aggregate.Created):
        pass

    class GapOpened(Aggregate.Event):
        gap_id: str
        kind: str
        subject: str
        message: str
        owner: str | None
        period: str | None
        since: datetime

    class GapClosed(Aggregate.Event):
        gap_id: str
        kind: str
        subject: str
        reason: str

    @event(Opened)
    def __init__(self) -> None:
        self.open: dict[str, dict[str, Any]] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> GapBoard:
        """As ``ObjectiveTrack``'s: a gap's entry is replaced or removed, never changed."""
        clone = copy.copy(self)
        clone.open = dict(self.open)
        clone._pending_events = list(self._pending_events)
        return clone

    @event(GapOpened)
    def open_gap(
        self,
        gap_id: str,
        kind: str,
        subject: str,
        message: str,
        owner: str | None,
        period: str | None,
        since: datetime,
    ) -> None:
        self.open[gap_id] = {
            "gap_id": gap_id,
            "kind": kind,
            "subject": subject,
            "message": message,
            "owner": owner,
            "period": period,
            "since": since.isoformat(),
        }

    @event(GapClosed)
    def close_gap(self, gap_id: str, kind: str, subject: str, reason: str) -> None:
        self.open.pop(gap_id, None)
