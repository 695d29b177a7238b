"""The metrics service's application: the KPI catalogue and batched reading ingestion.

Every KPI's current state is kept in memory (loaded from snapshots and the log at start-up),
so recording a batch reads nothing but the idempotency keys, and writes once. Instances that
share one store (scale-out) follow each other's events through the log before each command.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.persistence import Recording
from eventsourcing.utils import get_topic
from pydantic import BaseModel, Field

from contracts import Health, KPIDefinition, KPIReading, OutcomeView, ReadingStatus
from services.metrics.commands import KPICommand, definition_of
from services.metrics.domain import (
    KPI,
    UnhealthyStreak,
    check_unit,
    definition_in_force,
    is_stagnant,
    is_stale,
    judge,
    meaningful_change,
    parse_interval,
)
from services.metrics.telemetry import READINGS
from services.shared.errors import NotFound
from services.shared.history import FieldChange, changes
from services.shared.store import ServiceApplication, processing_event
from services.shared.telemetry import REPLAY_EVENTS, replaying


class KPIStatus(BaseModel):
    definition: KPIDefinition
    value: float | None = Field(description="Latest value by observed time.")
    observed_at: datetime | None
    health: Health | None
    stale: bool = Field(description="No reading arrived within 2x the expected interval.")
    stagnant: bool = Field(description="Unhealthy without meaningful change over the window.")
    unhealthy_since: datetime | None
    readings: int
    last_arrival: datetime
    version: int


class DefinitionHistoryEntry(BaseModel):
    """One definition of a KPI, as its history shows it."""

    version: int
    event_type: str
    occurred_at: datetime
    actor: str
    definition: dict[str, Any]
    changes: list[FieldChange] = Field(
        description="Field-level differences from the definition before."
    )


class RecordedReading(BaseModel):
    reading_id: str
    value: float
    observed_at: datetime
    source: str
    unit: str | None
    health: Health = Field(
        description="The reading's own health: its value judged by the target, warning "
        "threshold and direction of the KPI's definition in force when it was observed (the "
        "first definition for a reading observed before the KPI was defined). Not the KPI's "
        "health when the reading arrived: a late reading does not change the current value."
    )
    recorded_at: datetime


class MetricsApplication(ServiceApplication):
    name = "metrics"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {KPI: 1000}
    stored_models = (KPIDefinition, UnhealthyStreak)

    def __init__(
        self,
        env: dict[str, str] | None = None,
        stagnation_window: timedelta = timedelta(days=14),
        stagnation_tolerance: float = 0.05,
    ) -> None:
        super().__init__(env)
        self.stagnation_window = stagnation_window
        self.stagnation_tolerance = stagnation_tolerance
        self.kpis: dict[str, KPI] = {}
        self._kpis_by_id: dict[UUID, KPI] = {}
        #: Every event up to this log position is reflected in ``kpis``.
        self._followed = self.max_position()
        with replaying():
            for defined in self.notifications(topics=[get_topic(KPI.Defined)]):
                kpi = self._hold(self.repository.get(UUID(str(defined.originator_id))))
                REPLAY_EVENTS.inc(kpi.version)

    # -- commands ---------------------------------------------------------------------------

    def define_kpi(
        self, key: str, command: KPICommand, actor: str, correlation_id: str | None = None
    ) -> tuple[KPI, bool]:
        """Define a KPI, or redefine it; returns it and whether it is new."""
        definition = definition_of(key, command)
        with self.write_lock:
            self._follow()
            kpi = self.kpis.get(key)
            created = kpi is None
            if kpi is None:
                kpi = KPI(key, definition.model_dump(mode="json"), actor, correlation_id)
            else:
                kpi.redefine(definition, actor, correlation_id)
            try:
                recordings = self.save(kpi)
            except Exception:
                self._reload(kpi)
                raise
            self._hold(kpi)
            self._followed_past(recordings)
        return kpi, created

    def record(
        self,
        readings: Sequence[KPIReading],
        actor: str | None = None,
        correlation_id: str | None = None,
    ) -> list[OutcomeView]:
        """Record a batch of readings in one transaction, each exactly once.

        A reading is a duplicate when its reading id was recorded for its KPI before (or
        earlier in the batch); rejected when its KPI is unknown or its unit contradicts the
        KPI's. Outcomes come back in the order of ``readings``.
        """
        READINGS.labels("received").inc(len(readings))
        outcomes: list[OutcomeView | None] = [None] * len(readings)
        with self.write_lock:
            self._follow()
            candidates = self._acceptable(readings, outcomes)
            touched, keys = self._record_new(readings, candidates, outcomes, actor, correlation_id)
            if touched:
                self._commit(touched, keys)
        final = [outcome for outcome in outcomes if outcome is not None]
        for status in ("recorded", "duplicate", "rejected"):
            READINGS.labels(status).inc(sum(1 for o in final if o.status == status))
        return final

    def _acceptable(
        self, readings: Sequence[KPIReading], outcomes: list[OutcomeView | None]
    ) -> dict[str, list[int]]:
        """The indexes of the readings of each known KPI in a unit that agrees with it; the
        others are rejected in ``outcomes``."""
        candidates: dict[str, list[int]] = defaultdict(list)
        for index, reading in enumerate(readings):
            kpi = self.kpis.get(reading.kpi)
            reason = (
                f"unknown KPI {reading.kpi!r}: define it first (PUT /kpis/{reading.kpi})"
                if kpi is None
                else check_unit(kpi.definition, reading.unit)
            )
            if reason:
                outcomes[index] = _outcome(index, reading, "rejected", reason)
            else:
                candidates[reading.kpi].append(index)
        return candidates

    def _record_new(
        self,
        readings: Sequence[KPIReading],
        candidates: dict[str, list[int]],
        outcomes: list[OutcomeView | None],
        actor: str | None,
        correlation_id: str | None,
    ) -> tuple[dict[str, KPI], list[tuple[str, str]]]:
        """Record on its KPI (in memory) each candidate whose reading id is new to it; the
        others are duplicates in ``outcomes``. Returns the KPIs recorded on, and the
        idempotency keys of the readings recorded."""
        touched: dict[str, KPI] = {}
        keys: list[tuple[str, str]] = []
        seen = self.tracking_recorder.select_known_keys(
            [(key, str(readings[i].reading_id)) for key, ids in candidates.items() for i in ids]
        )
        for key, indexes in candidates.items():
            for index in indexes:
                reading = readings[index]
                pair = (key, str(reading.reading_id))
                if pair in seen:
                    outcomes[index] = _outcome(index, reading, "duplicate")
                    continue
                seen.add(pair)
                kpi = touched[key] = self.kpis[key]
                kpi.record(
                    reading_id=pair[1],
                    value=reading.value,
                    observed_at=reading.observed_at,
                    source=reading.source,
                    unit=reading.unit,
                    actor=actor or reading.source,
                    correlation_id=correlation_id,
                )
                keys.append(pair)
                outcomes[index] = _outcome(index, reading, "recorded")
        return touched, keys

    def _commit(self, touched: dict[str, KPI], keys: list[tuple[str, str]]) -> None:
        """Store the readings recorded on ``touched`` with their idempotency keys, in one
        transaction; when it fails, the KPIs in memory go back to what is stored."""
        try:
            recordings = self.record_batch(
                processing_event(touched.values()), idempotency_keys=keys
            )
        except Exception:
            for kpi in touched.values():
                self._reload(kpi)
            raise
        self._followed_past(recordings)

    # -- queries ----------------------------------------------------------------------------

    def get_kpi(self, key: str) -> KPI:
        if key not in self.kpis:
            with self.write_lock:
                self._follow()  # defined by another instance of the service, perhaps
        try:
            return self.kpis[key]
        except KeyError:
            raise NotFound(f"no KPI {key!r}") from None

    def status(self, key: str, now: datetime | None = None) -> KPIStatus:
        return self._status(self.get_kpi(key), now or datetime.now(UTC))

    def status_as_of(self, key: str, instant: datetime) -> KPIStatus:
        """The KPI as it was at ``instant``: its definition then, the latest value recorded by
        then, its health, staleness and stagnation judged at that instant."""
        kpi = self.as_of(KPI.create_id(key), instant)
        if not isinstance(kpi, KPI):
            raise NotFound(f"no KPI {key!r} at {instant.isoformat()}")
        return self._status(kpi, instant)

    def _status(self, kpi: KPI, now: datetime) -> KPIStatus:
        interval = parse_interval(kpi.definition.interval)
        return KPIStatus(
            definition=kpi.definition,
            value=kpi.latest_value,
            observed_at=kpi.latest_observed_at,
            health=kpi.health,
            stale=is_stale(kpi.last_arrival, interval, now),
            stagnant=is_stagnant(
                kpi.streak,
                now,
                self.stagnation_window,
                self.stagnation_tolerance,
                meaningful_change(kpi.definition),
            ),
            unhealthy_since=kpi.streak.since if kpi.streak else None,
            readings=kpi.readings,
            last_arrival=kpi.last_arrival,
            version=kpi.version,
        )

    def definition_history(self, key: str) -> list[DefinitionHistoryEntry]:
        """Every definition of the KPI, oldest first, with who set it, when, and the
        field-level changes from the one before (readings have their own history)."""
        kpi = self.get_kpi(key)
        entries, before = [], None
        for domain_event in self.events.get(kpi.id):
            if not isinstance(domain_event, KPI.Defined | KPI.Redefined):
                continue
            entries.append(
                DefinitionHistoryEntry(
                    version=domain_event.originator_version,
                    event_type="KPIDefined",
                    occurred_at=domain_event.timestamp,
                    actor=domain_event.actor,
                    definition=domain_event.definition,
                    changes=changes(before, domain_event.definition),
                )
            )
            before = domain_event.definition
        return entries

    def readings(
        self,
        key: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[RecordedReading]:
        """Readings observed in [since, until), ordered by observed time, read from the log;
        each judged by the KPI's definition in force when it was observed."""
        kpi = self.get_kpi(key)
        definitions: list[tuple[datetime, KPIDefinition]] = []
        recorded: list[KPI.Recorded] = []
        for event in self.events.get(kpi.id):
            if isinstance(event, KPI.Defined | KPI.Redefined):
                definitions.append(
                    (event.timestamp, KPIDefinition.model_validate(event.definition))
                )
            elif (
                isinstance(event, KPI.Recorded)
                and (since is None or event.observed_at >= since)
                and (until is None or event.observed_at < until)
            ):
                recorded.append(event)
        recorded.sort(key=lambda event: event.observed_at)
        return [
            RecordedReading(
                reading_id=event.reading_id,
                value=event.value,
                observed_at=event.observed_at,
                source=event.source,
                unit=event.unit,
                health=judge(event.value, definition_in_force(definitions, event.observed_at)),
                recorded_at=event.timestamp,
            )
            for event in recorded[:limit]
        ]

    # -- internals --------------------------------------------------------------------------

    def _hold(self, kpi: KPI) -> KPI:
        self.kpis[kpi.key] = self._kpis_by_id[kpi.id] = kpi
        return kpi

    def _reload(self, kpi: KPI) -> None:
        """Drop in-memory changes that were not stored (the commit failed, perhaps because
        another instance stored the same KPI's next version first)."""
        try:
            self._hold(self.repository.get(kpi.id))
        except Exception:
            self.kpis.pop(kpi.key, None)
            self._kpis_by_id.pop(kpi.id, None)

    def _follow(self, until: int | None = None) -> None:
        """Load the KPIs that other instances sharing this store changed since the last look
        (up to position ``until``, or the head). Alone on its store, this is one query."""
        until = self.max_position() if until is None else until
        if self._followed >= until:
            return
        changed: set[UUID] = set()
        for notification in self.notifications(self._followed, stop=until):
            kpi_id = UUID(str(notification.originator_id))
            held = self._kpis_by_id.get(kpi_id)
            if held is None or held.version < notification.originator_version:
                changed.add(kpi_id)
        self._followed = until
        for kpi_id in changed:
            aggregate: Any = self.repository.get(kpi_id)
            if isinstance(aggregate, KPI):
                self._hold(aggregate)

    def _followed_past(self, recordings: Sequence[Recording[UUID]]) -> None:
        """After a commit: whatever others stored before this commit is followed first."""
        if recordings:
            self._follow(until=recordings[0].notification.id - 1)
            self._followed = max(self._followed, recordings[-1].notification.id)


def _outcome(
    index: int, reading: KPIReading, status: ReadingStatus, reason: str | None = None
) -> OutcomeView:
    return OutcomeView(
        index=index, kpi=reading.kpi, reading_id=reading.reading_id, status=status, reason=reason
    )
