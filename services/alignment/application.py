"""The alignment service's application: it applies goal and metrics events to the alignment
graph, scores key results and objectives, and keeps the gaps; and it answers the queries."""

from __future__ import annotations

import heapq
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.persistence import Recording
from eventsourcing.utils import get_topic

from contracts import (
    Aggregation,
    Envelope,
    KeyResultCheckedIn,
    KeyResultDefinition,
    KeyResultKind,
    KPIDefined,
    KPIRecorded,
    ObjectiveArchived,
    ObjectiveSet,
)
from services.alignment.domain import GAP_BOARD_ID, GapBoard, KPITrack, ObjectiveTrack
from services.alignment.gaps import GapMemo, KPIFacts, ObjectiveFacts
from services.alignment.scoring import (
    PaceThresholds,
    ReadingRef,
    WindowStats,
    clamp,
    expected_fraction,
    in_window,
    milestone_progress,
    pace,
    period_bounds,
    progress,
    succeeded,
    weighted_mean,
)
from services.shared.consumer import UnitOfWork
from services.shared.errors import NotFound
from services.shared.kpi_health import is_stagnant, meaningful_change, stagnation_holds_until
from services.shared.store import ServiceApplication
from services.shared.telemetry import REPLAY_EVENTS, replaying

#: Roll-ups propagate up the cascade; a cycle cannot exist (the goal service refuses them),
#: but a bound keeps a bad producer from looping the consumer.
MAX_CASCADE_DEPTH = 50
#: Lineage of a sum, average or count cites the readings folded in by that evaluation, at most
#: this many. A backfill folds a key result's whole history in one evaluation: with 1,000, a
#: rebuild that met the objectives after a million readings held 600,000 citations at once,
#: and goal peaked near 600 MB parsing the scores that carried them.
MAX_LINEAGE = 100
DEFAULT_PACE = PaceThresholds()


class AlignmentApplication(ServiceApplication):
    name = "alignment"
    # Tracks are read on every batch: keep them in the repository's cache. The service is its
    # store's only writer, so the cache is updated on save and never fast-forwarded (which
    # would cost one store query per aggregate read).
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "100000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
    }

    def __init__(
        self,
        env: dict[str, str] | None = None,
        thresholds: PaceThresholds = DEFAULT_PACE,
        stagnation_window: timedelta = timedelta(days=14),
        stagnation_tolerance: float = 0.05,
    ) -> None:
        super().__init__(env)
        self.thresholds = thresholds
        self.stagnation_window = stagnation_window
        self.stagnation_tolerance = stagnation_tolerance
        self._index_lock = threading.Lock()
        #: objective id -> track id, and KPI key -> objective ids linking it (kpi KRs).
        self.objectives: dict[str, UUID] = {}
        self.kpi_links: dict[str, set[str]] = defaultdict(set)
        self.kpis: set[str] = set()
        #: The tracks as last committed, by objective id and KPI key: the same objects as in
        #: the repository's cache, found without its locking and bookkeeping (gaps look at
        #: every track on every batch). Filled as tracks are read or committed.
        self._committed_tracks: dict[str, ObjectiveTrack] = {}
        self._committed_kpis: dict[str, KPITrack] = {}
        with replaying():
            for topic in (ObjectiveTrack.Defined, ObjectiveTrack.Redefined, KPITrack.Defined):
                for notification in self._notifications(get_topic(topic)):
                    self._index(self.mapper.to_domain_event(notification))
                    REPLAY_EVENTS.inc()

    def _notifications(self, topic: str) -> Iterator[Any]:
        position = 0
        while True:
            page = self.recorder.select_notifications(position + 1, 1000, topics=[topic])
            yield from page
            if len(page) < 1000:
                return
            position = page[-1].id

    def _record(self, processing: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        # Where the library puts committed aggregates in its cache: the index follows.
        recordings = super()._record(processing)
        for aggregate in processing.aggregates.values():
            if isinstance(aggregate, ObjectiveTrack):
                self._committed_tracks[aggregate.objective_id] = aggregate
            elif isinstance(aggregate, KPITrack):
                self._committed_kpis[aggregate.key] = aggregate
        return recordings

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for recording in recordings:
            self._index(recording.domain_event)
        super()._notify(recordings)

    def _index(self, domain_event: Any) -> None:
        with self._index_lock:
            if isinstance(domain_event, ObjectiveTrack.Defined):
                self.objectives[domain_event.objective_id] = domain_event.originator_id
            if isinstance(domain_event, ObjectiveTrack.Defined | ObjectiveTrack.Redefined):
                objective_id = str(domain_event.definition["id"])
                for links in self.kpi_links.values():
                    links.discard(objective_id)
                for key_result in domain_event.definition["key_results"]:
                    if key_result.get("kind") == "kpi" and key_result.get("kpi"):
                        self.kpi_links[key_result["kpi"]].add(objective_id)
            elif isinstance(domain_event, KPITrack.Defined):
                self.kpis.add(domain_event.key)

    # -- queries ----------------------------------------------------------------------------
    # Read-only: they take the cached aggregates as they are (no copy). Only a batch's unit
    # of work, which changes aggregates, works on copies.

    def track(self, objective_id: str) -> ObjectiveTrack:
        found = self._committed_tracks.get(objective_id)
        if found is None:
            track_id = self.objectives.get(objective_id)
            if track_id is None:
                raise NotFound(f"no objective {objective_id}")
            found = self._committed_tracks[objective_id] = self.repository.get(
                track_id, deepcopy_from_cache=False
            )
        return found

    def tracks(self) -> list[ObjectiveTrack]:
        with self._index_lock:
            ids = list(self.objectives)
        return [self.track(objective_id) for objective_id in ids]

    def tracks_as_of(self, instant: datetime) -> list[ObjectiveTrack]:
        """Every objective as the alignment service saw it at ``instant``: definitions and
        evaluations recorded by then (objectives not set yet are absent)."""
        with self._index_lock:
            ids = list(self.objectives.values())
        found = (self.as_of(track_id, instant) for track_id in ids)
        return [track for track in found if isinstance(track, ObjectiveTrack)]

    def track_as_of(self, objective_id: str, instant: datetime) -> ObjectiveTrack:
        track_id = self.objectives.get(objective_id)
        track = self.as_of(track_id, instant) if track_id else None
        if not isinstance(track, ObjectiveTrack):
            raise NotFound(f"no objective {objective_id} at {instant.isoformat()}")
        return track

    def open_gaps_as_of(self, instant: datetime) -> list[dict[str, Any]]:
        board = self.as_of(GAP_BOARD_ID, instant)
        return list(board.open.values()) if isinstance(board, GapBoard) else []

    def kpi_track(self, key: str) -> KPITrack | None:
        found = self._committed_kpis.get(key)
        if found is None:
            try:
                found = self._committed_kpis[key] = self.repository.get(
                    KPITrack.create_id(key), deepcopy_from_cache=False
                )
            except AggregateNotFoundError:
                return None
        return found

    def open_gaps(self) -> list[dict[str, Any]]:
        try:
            board: GapBoard = self.repository.get(GAP_BOARD_ID, deepcopy_from_cache=False)
        except AggregateNotFoundError:
            return []
        return list(board.open.values())

    def key_result_history(self, key_result_id: str) -> list[dict[str, Any]]:
        """Every published evaluation of a key result, oldest first, each with the position
        in goal.events of the objective definition it used (its targets and weights)."""
        for track in self.tracks():
            if not any(kr.id == key_result_id for kr in track.definition.key_results):
                continue
            history, definition_position = [], 0
            for e in self.events.get(track.id):
                if isinstance(e, ObjectiveTrack.Defined | ObjectiveTrack.Redefined):
                    definition_position = e.position
                elif (
                    isinstance(e, ObjectiveTrack.KeyResultEvaluated)
                    and e.key_result_id == key_result_id
                    and e.published
                ):
                    history.append(
                        {
                            "score": e.score,
                            "progress": e.progress,
                            "value": e.value,
                            "expected": e.expected,
                            "status": e.status,
                            "as_of": e.as_of,
                            "lineage": e.lineage,
                            "definition": {"producer": "goal", "position": definition_position},
                        }
                    )
            return history
        raise NotFound(f"no key result {key_result_id}")


def reading_lineage(reference: ReadingRef) -> dict[str, Any]:
    return {
        "producer": "metrics",
        "position": reference.position,
        "event_type": "KPIRecorded",
        "reading_id": reference.reading_id,
        "observed_at": reference.observed_at.isoformat(),
        "source": reference.source,
    }


@dataclass
class Batch:
    """What one consumed batch changed, gathered by ``apply`` and settled by ``finish``."""

    #: KPI key -> (reading, its health, when the metrics service recorded it).
    readings: dict[str, list[tuple[ReadingRef, str, datetime]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    arrived: dict[str, datetime] = field(default_factory=dict)
    redefined: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    lineage: dict[tuple[str, str], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    tracks: dict[str, ObjectiveTrack] = field(default_factory=dict)
    kpis: dict[str, KPITrack] = field(default_factory=dict)
    #: KPI key -> objectives (re)defined in this batch that link it (the application's index
    #: knows only committed definitions); made once, when scoring starts.
    redefined_links: dict[str, set[str]] | None = None


class AlignmentPolicy:
    """Applies goal and metrics events to the graph; scores once per batch in ``finish``."""

    def __init__(self, application: AlignmentApplication, gap_settle_seconds: float = 0.0) -> None:
        self.application = application
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        #: Gaps are settled over the whole graph (every objective and KPI), which costs a
        #: small batch as much as its readings: after a batch, at most this often (0: after
        #: every batch), and by ``settle_pending_gaps`` for the batches in between.
        self.gap_settle_seconds = gap_settle_seconds
        self._gaps_pending = False
        self._next_settlement = 0.0  # on the monotonic clock
        self._facts_of_objectives: dict[str, tuple[ObjectiveTrack, ObjectiveFacts]] = {}
        self._facts_of_kpis: dict[str, tuple[KPITrack, KPIFacts, datetime | None]] = {}
        self._gaps = GapMemo()

    # -- facts for the gaps -----------------------------------------------------------------
    # Gaps are settled over every objective and KPI at each settlement. A track changes only in
    # a batch's copy, so facts drawn from a track object stay true for as long as that object
    # is the one in the cache: they are kept with it and reused while it is, and so are the
    # gaps drawn from them (``GapMemo``).

    def _objective_facts(self, track: ObjectiveTrack) -> ObjectiveFacts:
        kept = self._facts_of_objectives.get(track.objective_id)
        if kept is not None and kept[0] is track:
            return kept[1]
        facts = ObjectiveFacts(
            track.definition,
            frozenset(
                kr.id
                for kr in track.definition.key_results
                if track.check_ins.get(kr.id, {}).get("value") is not None
                or (kr.id in track.stats and track.stats[kr.id].count > 0)
            ),
        )
        self._facts_of_objectives[track.objective_id] = (track, facts)
        return facts

    def _kpi_facts(self, kpi: KPITrack, now: datetime) -> KPIFacts:
        """Stagnation depends on the instant too: its answer is kept until the instant it
        may change (``stagnation_holds_until``)."""
        kept = self._facts_of_kpis.get(kpi.key)
        if kept is not None and kept[0] is kpi and (kept[2] is None or now < kept[2]):
            return kept[1]
        assert kpi.definition is not None
        window = self.application.stagnation_window
        facts = KPIFacts(
            kpi.key,
            kpi.health,
            kpi.last_arrival,
            timedelta(seconds=kpi.definition.interval_seconds),
            stagnant=is_stagnant(
                kpi.streak,
                now,
                window,
                self.application.stagnation_tolerance,
                meaningful_change(kpi.definition),
            ),
            owner=kpi.definition.owner,
        )
        self._facts_of_kpis[kpi.key] = (
            kpi,
            facts,
            stagnation_holds_until(kpi.streak, now, window),
        )
        return facts

    # -- per event --------------------------------------------------------------------------

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        batch: Batch = unit.scratch.setdefault("batch", Batch())
        if isinstance(event, ObjectiveSet):
            definition = event.payload
            track = self._track(unit, batch, definition.id)
            if track is None:
                track = ObjectiveTrack(
                    definition.id, definition.model_dump(mode="json"), event.position
                )
                batch.tracks[definition.id] = track
                unit.add(track)
            else:
                track.redefine(definition.model_dump(mode="json"), event.position)
            batch.redefined.add(definition.id)
            batch.dirty.update((definition.id, kr.id) for kr in definition.key_results)
        elif isinstance(event, ObjectiveArchived):
            track = self._require_track(unit, batch, event.payload.objective_id)
            track.archive(event.position, event.occurred_at)
            batch.archived.add(track.objective_id)
            batch.dirty.update((track.objective_id, kr.id) for kr in track.definition.key_results)
        elif isinstance(event, KeyResultCheckedIn):
            check_in = event.payload
            track = self._require_track(unit, batch, check_in.objective_id)
            track.check_in(
                check_in.key_result_id,
                check_in.value,
                check_in.done,
                check_in.checklist_done,
                check_in.confidence,
                event.position,
            )
            batch.dirty.add((check_in.objective_id, check_in.key_result_id))
            batch.lineage[(check_in.objective_id, check_in.key_result_id)].append(
                {"producer": "goal", "position": event.position, "event_type": "KeyResultCheckedIn"}
            )
        elif isinstance(event, KPIDefined):
            self._kpi(unit, batch, event.payload.key).redefine(
                event.payload.model_dump(mode="json")
            )
        elif isinstance(event, KPIRecorded):
            reading = event.payload
            reference = ReadingRef(
                reading.reading_id,
                reading.value,
                reading.observed_at,
                event.position,
                reading.source,
            )
            batch.readings[reading.kpi].append((reference, reading.health.value, event.occurred_at))
            batch.arrived[reading.kpi] = max(
                event.occurred_at, batch.arrived.get(reading.kpi, event.occurred_at)
            )
        else:
            raise TypeError(f"the alignment service does not consume {event.event_type}")

    # -- as time passes ---------------------------------------------------------------------

    def reevaluate(self) -> int:
        """Record the statuses that changed only because time passed (pace follows the
        elapsed part of the period; a period that closed gets its final grade). Run on a
        timer; returns how many objectives changed."""
        now = self.clock()
        with self.application.write_lock:
            unit = UnitOfWork(self.application)
            batch: Batch = unit.scratch.setdefault("batch", Batch())
            for objective_id in list(self.application.objectives):
                track = self._track(unit, batch, objective_id)
                if track is None or not track.active:
                    continue
                if self._status_moved(track, now):
                    batch.dirty.add((objective_id, ""))  # the objective itself
                for key_result in track.definition.key_results:
                    evaluation = track.evaluations.get(key_result.id)
                    period = track.definition.period
                    expected = expected_fraction(period.start, period.end, now)
                    if (
                        evaluation is not None
                        and evaluation["status"]
                        != pace(evaluation["progress"], expected, self.application.thresholds).value
                    ):
                        batch.dirty.add((objective_id, key_result.id))
            self._evaluate(unit, batch, now)
            self._settle_gaps(unit, batch, now)  # a KPI that stopped reporting turns stale
            self._record_unconsumed(unit)
            return len({objective_id for objective_id, _ in batch.dirty})

    def _status_moved(self, track: ObjectiveTrack, now: datetime) -> bool:
        evaluation = track.evaluation
        if evaluation is None:
            return False
        period = track.definition.period
        _, ends = period_bounds(period.start, period.end)
        expected = expected_fraction(period.start, period.end, now)
        status = pace(evaluation["score"], expected, self.application.thresholds)
        return bool(status.value != evaluation["status"] or (now >= ends) != evaluation["final"])

    # -- per batch --------------------------------------------------------------------------

    def finish(self, unit: UnitOfWork) -> None:
        batch: Batch | None = unit.scratch.get("batch")
        if batch is None:
            return
        now = self.clock()
        # An archival recomputes too: readings recorded after it may have arrived before it.
        for objective_id in sorted(batch.redefined | batch.archived):
            self._backfill(unit, batch, objective_id)
        for key, readings in batch.readings.items():
            self._fold_readings(unit, batch, key, readings)
        self._evaluate(unit, batch, now)
        # Objectives set or archived move gaps of their own and of the KPIs they link: at once.
        if batch.redefined or batch.archived or time.monotonic() >= self._next_settlement:
            self._settle_gaps(unit, batch, now)
        else:
            self._gaps_pending = True

    def settle_pending_gaps(self) -> bool:
        """Settle the gaps that batches left pending (see ``gap_settle_seconds``); run on a
        timer. Returns whether there were any."""
        with self.application.write_lock:
            if not self._gaps_pending:
                return False
            unit = UnitOfWork(self.application)
            try:
                self._settle_gaps(unit, Batch(), self.clock())
                self._record_unconsumed(unit)
            except BaseException:
                self._gaps_pending = True  # for the next round
                raise
            return True

    def _record_unconsumed(self, unit: UnitOfWork) -> None:
        """Record what a unit of work changed outside a consumed batch (nothing to track)."""
        processing = unit.processing_event()
        if processing.events:
            self.application.record_batch(processing)

    def _track(self, unit: UnitOfWork, batch: Batch, objective_id: str) -> ObjectiveTrack | None:
        if objective_id in batch.tracks:
            return batch.tracks[objective_id]
        found = unit.get(ObjectiveTrack.create_id(objective_id))
        if isinstance(found, ObjectiveTrack):
            batch.tracks[objective_id] = found
            return found
        return None

    def _require_track(self, unit: UnitOfWork, batch: Batch, objective_id: str) -> ObjectiveTrack:
        track = self._track(unit, batch, objective_id)
        if track is None:
            raise LookupError(f"objective {objective_id} was never set")
        return track

    def _kpi(self, unit: UnitOfWork, batch: Batch, key: str) -> KPITrack:
        if key not in batch.kpis:
            found = unit.get(KPITrack.create_id(key))
            kpi = found if isinstance(found, KPITrack) else KPITrack(key, None)
            unit.add(kpi)
            batch.kpis[key] = kpi
        return batch.kpis[key]

    def _linked(self, unit: UnitOfWork, batch: Batch, key: str) -> list[ObjectiveTrack]:
        if batch.redefined_links is None:
            batch.redefined_links = defaultdict(set)
            for objective_id in batch.redefined:
                for key_result in batch.tracks[objective_id].definition.key_results:
                    if key_result.kpi:
                        batch.redefined_links[key_result.kpi].add(objective_id)
        ids = set(self.application.kpi_links.get(key, ())) | batch.redefined_links.get(key, set())
        tracks = [self._track(unit, batch, objective_id) for objective_id in sorted(ids)]
        # Archived ones too: readings recorded before the archival may arrive after it.
        return [t for t in tracks if t is not None]

    @staticmethod
    def _counts(track: ObjectiveTrack, recorded_at: datetime, applied_before: bool) -> bool:
        """Whether a reading recorded at ``recorded_at`` counts for the track's key results:
        always while it is active; once archived, if recorded before the archival. Readings
        and archivals come on two topics, in either order: judged by when they happened,
        the archived objective's scores are the same whatever the order of arrival (a
        reading recorded at the very instant counts if it was applied first)."""
        if track.active:
            return True
        archived_at = track.archived_at
        if archived_at is None:  # archived before archivals were dated: frozen as it was
            return False
        return recorded_at < archived_at or (applied_before and recorded_at == archived_at)

    def _backfill(self, unit: UnitOfWork, batch: Batch, objective_id: str) -> None:
        """Score a (re)defined or archived objective's kpi key results over the readings
        already applied."""
        track = batch.tracks[objective_id]
        for key_result in track.definition.key_results:
            if key_result.kind is not KeyResultKind.kpi or not key_result.kpi:
                continue
            stats = WindowStats()
            kpi = self._kpi(unit, batch, key_result.kpi)
            for stored in self.application.events.get(kpi.id):
                if isinstance(stored, KPITrack.ReadingsApplied):
                    for item in stored.readings:
                        # Kept per reading since archivals need it; before, per batch.
                        recorded = item.get("recorded_at")
                        if not self._counts(
                            track,
                            datetime.fromisoformat(recorded) if recorded else stored.arrived_at,
                            applied_before=True,
                        ):
                            continue
                        reference = ReadingRef(
                            item["reading_id"],
                            item["value"],
                            datetime.fromisoformat(item["observed_at"]),
                            item["position"],
                            item.get("source", ""),
                        )
                        if in_window(
                            reference.observed_at,
                            track.definition.period.start,
                            track.definition.period.end,
                        ):
                            stats.add(reference)
                            self._cite(batch, (objective_id, key_result.id), reference)
            track.stats[key_result.id] = stats

    def _fold_readings(
        self,
        unit: UnitOfWork,
        batch: Batch,
        key: str,
        readings: list[tuple[ReadingRef, str, datetime]],
    ) -> None:
        kpi = self._kpi(unit, batch, key)
        kpi.apply_readings(
            [
                {
                    "reading_id": r.reading_id,
                    "value": r.value,
                    "observed_at": r.observed_at.astimezone(UTC).isoformat(),
                    "position": r.position,
                    "source": r.source,
                    "health": health,
                    "recorded_at": recorded_at.isoformat(),
                }
                for r, health, recorded_at in readings
            ],
            batch.arrived[key],
        )
        for track in self._linked(unit, batch, key):
            period = track.definition.period
            for key_result in track.definition.key_results:
                if key_result.kind is not KeyResultKind.kpi or key_result.kpi != key:
                    continue
                stats = track.stats.setdefault(key_result.id, WindowStats())
                for reference, _, recorded_at in readings:
                    if in_window(reference.observed_at, period.start, period.end) and self._counts(
                        track, recorded_at, applied_before=False
                    ):
                        stats.add(reference)
                        batch.dirty.add((track.objective_id, key_result.id))
                        self._cite(batch, (track.objective_id, key_result.id), reference)

    @staticmethod
    def _cite(batch: Batch, key_result: tuple[str, str], reference: ReadingRef) -> None:
        """Cite a reading in the lineage of the key result's next evaluation. Only the first
        ``MAX_LINEAGE`` are ever cited, so no more are kept: a backfill over a long history
        would hold them all, and a rebuild backfills a thousand key results at once."""
        cited = batch.lineage[key_result]
        if len(cited) < MAX_LINEAGE:
            cited.append(reading_lineage(reference))

    def _evaluate(self, unit: UnitOfWork, batch: Batch, now: datetime) -> None:
        """Evaluate every key result whose inputs changed and their objectives, deepest in the
        cascade first, so that a roll-up is scored once, after all its children, in this
        batch. An objective that changed (or was archived) dirties the roll-up above it."""
        dirty: dict[str, set[str]] = defaultdict(set)
        for objective_id, key_result_id in batch.dirty:
            dirty[objective_id].add(key_result_id)
        depths: dict[str, int] = {}
        # Deepest first, then by id. A heap, not a max over the dirty ones per objective: a
        # batch of readings dirties most objectives, and that was quadratic.
        queue = [(-self._depth(unit, batch, o, depths), o) for o in dirty]
        heapq.heapify(queue)
        while queue:
            objective_id = heapq.heappop(queue)[1]  # queued exactly while dirty
            key_result_ids = dirty.pop(objective_id)
            track = self._track(unit, batch, objective_id)
            if track is None:
                continue
            for key_result in track.definition.key_results:
                if key_result.id in key_result_ids:
                    self._evaluate_key_result(unit, batch, track, key_result, now)
            archived = not track.active and objective_id in batch.archived
            if self._evaluate_objective(track, now) or archived:
                definition = track.definition
                if definition.parent_id and definition.parent_key_result_id:
                    parent = definition.parent_id
                    if parent not in dirty:
                        heapq.heappush(queue, (-self._depth(unit, batch, parent, depths), parent))
                    dirty[parent].add(definition.parent_key_result_id)

    def _depth(
        self, unit: UnitOfWork, batch: Batch, objective_id: str, depths: dict[str, int]
    ) -> int:
        """How many parents an objective has above it (bounded, should a producer send a
        cycle)."""
        if objective_id not in depths:
            depth, current = 0, self._track(unit, batch, objective_id)
            while (
                current is not None and current.definition.parent_id and depth < MAX_CASCADE_DEPTH
            ):
                depth += 1
                current = self._track(unit, batch, current.definition.parent_id)
            depths[objective_id] = depth
        return depths[objective_id]

    def _evaluate_key_result(
        self,
        unit: UnitOfWork,
        batch: Batch,
        track: ObjectiveTrack,
        key_result: KeyResultDefinition,
        now: datetime,
    ) -> None:
        period = track.definition.period
        value: float | None = None
        stats: WindowStats | None = None
        if key_result.kind is KeyResultKind.milestone:
            check_in = track.check_ins.get(key_result.id, {})
            fraction = milestone_progress(
                check_in.get("done"), key_result.checklist, check_in.get("checklist_done")
            )
            value = fraction
        elif key_result.kind is KeyResultKind.rollup:
            children = [
                child
                for child in self._children(unit, batch, track.objective_id)
                if child.definition.parent_key_result_id == key_result.id and child.active
            ]
            mean = weighted_mean(
                ((child.evaluation or {}).get("score", 0.0), child.definition.weight)
                for child in children
            )
            fraction = value = mean if mean is not None else 0.0
        else:
            if key_result.kind is KeyResultKind.kpi:
                stats = track.stats.setdefault(key_result.id, WindowStats())
                value = stats.value(key_result.aggregation or Aggregation.latest)
            else:
                value = track.check_ins.get(key_result.id, {}).get("value")
            assert key_result.baseline is not None
            assert key_result.target is not None
            fraction = (
                progress(value, key_result.baseline, key_result.target)
                if value is not None
                else 0.0
            )
        lineage = batch.lineage.get((track.objective_id, key_result.id), [])[:MAX_LINEAGE]
        if stats is not None:
            determining = stats.determining(key_result.aggregation or Aggregation.latest)
            if determining is not None:  # latest, min, max: the one reading that decides
                lineage = [reading_lineage(determining)]
        expected = expected_fraction(period.start, period.end, now)
        track.record_key_result(
            key_result.id,
            stats=stats,
            value=value,
            progress=fraction,
            score=clamp(fraction),
            expected=expected,
            status=pace(fraction, expected, self.application.thresholds),
            as_of=now,
            lineage=lineage,
        )

    def _children(self, unit: UnitOfWork, batch: Batch, objective_id: str) -> list[ObjectiveTrack]:
        ids = [o for o in self.application.objectives if o != objective_id] + [
            o for o in batch.tracks if o not in self.application.objectives
        ]
        children = []
        for child_id in ids:
            child = self._track(unit, batch, child_id)
            if child is not None and child.definition.parent_id == objective_id:
                children.append(child)
        return children

    def _evaluate_objective(self, track: ObjectiveTrack, now: datetime) -> bool:
        definition = track.definition
        if not track.active:
            if track.archived_at is None:  # archived before archivals were dated: as it was
                return False
            # Graded as of its archival: an objective archived before its period ended gets
            # no final grade later.
            now = min(now, track.archived_at)
        score = (
            weighted_mean(
                (track.evaluations.get(kr.id, {}).get("score", 0.0), kr.weight)
                for kr in definition.key_results
            )
            or 0.0
        )
        expected = expected_fraction(definition.period.start, definition.period.end, now)
        _, ends = period_bounds(definition.period.start, definition.period.end)
        final = now >= ends
        return track.record_objective(
            score=score,
            expected=expected,
            status=pace(score, expected, self.application.thresholds),
            as_of=now,
            final=final,
            success=succeeded(score, definition.type) if final else None,
        )

    def _settle_gaps(self, unit: UnitOfWork, batch: Batch, now: datetime) -> None:
        # Settled in this unit. Should a batch's unit not commit, the batch is applied again
        # and settles again or leaves the gaps pending for the timer.
        self._gaps_pending = False
        self._next_settlement = time.monotonic() + self.gap_settle_seconds
        tracks = {t.objective_id: t for t in self.application.tracks()} | batch.tracks
        facts = [self._objective_facts(track) for track in tracks.values()]
        kpi_facts = []
        for key in self.application.kpis | set(batch.kpis):
            kpi = batch.kpis.get(key) or self.application.kpi_track(key)
            if kpi is not None and kpi.definition is not None:
                kpi_facts.append(self._kpi_facts(kpi, now))
        gaps = self._gaps.detect(facts, kpi_facts, now)
        found = unit.get(GAP_BOARD_ID)
        board = found if isinstance(found, GapBoard) else GapBoard()
        opened = set(gaps) - set(board.open)
        closed = set(board.open) - set(gaps)
        # A gap still open whose owner, period or message changed (a KPI or objective given
        # to someone else, a KPI defined at last) is detected again, as it is now: the
        # published gaps stay true, and ``--owner`` finds them. It keeps its age.
        changed = {
            gap_id: datetime.fromisoformat(was["since"])
            for gap_id, was in board.open.items()
            if gap_id in gaps
            and (was["owner"], was["period"], was["message"])
            != (gaps[gap_id].owner, gaps[gap_id].period, gaps[gap_id].message)
        }
        for gap_id in sorted(opened | set(changed)):
            gap = gaps[gap_id]
            board.open_gap(
                gap_id,
                gap.kind.value,
                gap.subject,
                gap.message,
                gap.owner,
                gap.period,
                changed.get(gap_id, now),
            )
        for gap_id in sorted(closed):
            closing = board.open[gap_id]
            board.close_gap(
                gap_id, closing["kind"], closing["subject"], "the condition no longer holds"
            )
        if opened or closed or changed or found is None:
            unit.add(board)
