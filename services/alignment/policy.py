"""What the alignment service does with the events it consumes from ``goal.events`` and
``metrics.events``: each event changes its tracks in the batch's unit of work; once per batch
the key results whose inputs changed are evaluated, with their objectives and the roll-ups
above them, and the gaps are settled. The rules are in ``evaluation`` and ``gaps``; this
module decides what to evaluate and when."""

from __future__ import annotations

import heapq
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from contracts import (
    Envelope,
    KeyResultCheckedIn,
    KeyResultDefinition,
    KeyResultKind,
    KPIDefined,
    KPIRecorded,
    ObjectiveArchived,
    ObjectiveSet,
)
from services.alignment.application import AlignmentApplication
from services.alignment.batch import Batch, BatchReading
from services.alignment.domain import (
    GAP_BOARD_ID,
    GapBoard,
    KPITrack,
    ObjectiveTrack,
    to_micros,
)
from services.alignment.evaluation import (
    check_in_citation,
    cite,
    counts_for,
    evaluate_key_result,
    evaluate_objective,
    graded_at,
    key_result_status_moved,
    lineage_of,
    measured_progress,
    objective_status_moved,
    recorded_in_time,
    rollup_progress,
)
from services.alignment.gaps import (
    GapMemo,
    KPIFacts,
    ObjectiveFacts,
    gap_changes,
    kpi_facts,
    objective_facts,
)
from services.alignment.scoring import ReadingRef, WindowStats, period_bounds
from services.shared.consumer import UnitOfWork


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

    # -- per event --------------------------------------------------------------------------

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        batch = Batch.of(unit, self.application)
        # Readings first: nearly every event is one.
        if isinstance(event, KPIRecorded):
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
        elif isinstance(event, ObjectiveSet):
            definition = event.payload
            track = batch.track(definition.id)
            if track is None:
                track = ObjectiveTrack(
                    definition.id, definition.model_dump(mode="json"), event.position
                )
                batch.tracks[definition.id] = track
                unit.add(track)
            else:
                track.redefine(definition.model_dump(mode="json"), event.position)
            batch.redefined.add(definition.id)
            batch.dirty_objective(track)
        elif isinstance(event, ObjectiveArchived):
            track = batch.require_track(event.payload.objective_id)
            track.archive(event.position, event.occurred_at)
            batch.archived.add(track.objective_id)
            batch.dirty_objective(track)
        elif isinstance(event, KeyResultCheckedIn):
            check_in = event.payload
            batch.require_track(check_in.objective_id).check_in(
                check_in.key_result_id,
                check_in.value,
                check_in.done,
                check_in.checklist_done,
                check_in.confidence,
                event.position,
            )
            checked = (check_in.objective_id, check_in.key_result_id)
            batch.dirty.add(checked)
            batch.lineage[checked].append(check_in_citation(event.position))
        elif isinstance(event, KPIDefined):
            batch.kpi(event.payload.key).redefine(event.payload.model_dump(mode="json"))
        else:
            raise TypeError(f"the alignment service does not consume {event.event_type}")

    # -- per batch --------------------------------------------------------------------------

    def finish(self, unit: UnitOfWork) -> None:
        batch = unit.state_if_any(Batch)
        if batch is None:
            return
        now = self.clock()
        # An archival recomputes too: readings recorded after it may have arrived before it.
        for objective_id in sorted(batch.redefined | batch.archived):
            self._backfill(batch, objective_id)
        for key, readings in batch.readings.items():
            self._fold_readings(batch, key, readings)
        self._evaluate(batch, now)
        # Objectives set or archived move gaps of their own and of the KPIs they link: at once.
        if batch.redefined or batch.archived or time.monotonic() >= self._next_settlement:
            self._settle_gaps(batch, now)
        else:
            self._gaps_pending = True

    def _backfill(self, batch: Batch, objective_id: str) -> None:
        """Score a (re)defined or archived objective's kpi key results over the readings
        already applied."""
        track = batch.tracks[objective_id]
        for key_result in track.definition.key_results:
            if key_result.kind is not KeyResultKind.kpi or not key_result.kpi:
                continue
            counted = [
                reference
                for stored in self.application.events.get(batch.kpi(key_result.kpi).id)
                if isinstance(stored, KPITrack.ReadingsApplied)
                for reference, recorded_at in stored.references()
                if counts_for(track, reference.observed_at, recorded_at, applied_before=True)
            ]
            stats = WindowStats()
            stats.extend(counted)
            cite(batch.lineage[(objective_id, key_result.id)], counted)
            track.stats[key_result.id] = stats

    def _fold_readings(self, batch: Batch, key: str, readings: list[BatchReading]) -> None:
        batch.kpi(key).apply_readings(
            [
                (
                    r.reading_id,
                    r.value,
                    to_micros(r.observed_at),
                    r.position,
                    r.source,
                    health,
                    to_micros(recorded_at),
                )
                for r, health, recorded_at in readings
            ],
            batch.arrived[key],
        )
        for track in batch.linked(key):
            period = track.definition.period
            begins, ends = period_bounds(period.start, period.end)
            for key_result in track.definition.key_results:
                if key_result.kind is not KeyResultKind.kpi or key_result.kpi != key:
                    continue
                # ``counts_for``, with the period's bounds worked out once for the batch.
                counted = [
                    reference
                    for reference, _, recorded_at in readings
                    if begins <= reference.observed_at < ends
                    and recorded_in_time(
                        track.active, track.archived_at, recorded_at, applied_before=False
                    )
                ]
                if counted:
                    track.stats.setdefault(key_result.id, WindowStats()).extend(counted)
                    checked = (track.objective_id, key_result.id)
                    batch.dirty.add(checked)
                    cite(batch.lineage[checked], counted)

    def _evaluate(self, batch: Batch, now: datetime) -> None:
        """Evaluate every key result whose inputs changed and their objectives, deepest in the
        cascade first, so that a roll-up is scored once, after all its children, in this
        batch. An objective that changed (or was archived) dirties the roll-up above it."""
        dirty: dict[str, set[str]] = defaultdict(set)
        for objective_id, key_result_id in batch.dirty:
            dirty[objective_id].add(key_result_id)
        depths: dict[str, int] = {}
        # Deepest first, then by id. A heap, not a max over the dirty ones per objective: a
        # batch of readings dirties most objectives, and that was quadratic.
        queue = [(-batch.depth(o, depths), o) for o in dirty]
        heapq.heapify(queue)
        while queue:
            objective_id = heapq.heappop(queue)[1]  # queued exactly while dirty
            key_result_ids = dirty.pop(objective_id)
            track = batch.track(objective_id)
            if track is None:
                continue
            for key_result in track.definition.key_results:
                if key_result.id in key_result_ids:
                    self._evaluate_key_result(batch, track, key_result, now)
            archived = not track.active and objective_id in batch.archived
            if self._evaluate_objective(track, now) or archived:
                definition = track.definition
                if definition.parent_id and definition.parent_key_result_id:
                    parent = definition.parent_id
                    if parent not in dirty:
                        heapq.heappush(queue, (-batch.depth(parent, depths), parent))
                    dirty[parent].add(definition.parent_key_result_id)

    def _evaluate_key_result(
        self, batch: Batch, track: ObjectiveTrack, key_result: KeyResultDefinition, now: datetime
    ) -> None:
        stats: WindowStats | None = None
        value: float | None
        if key_result.kind is KeyResultKind.rollup:
            fraction = rollup_progress(key_result.id, batch.children(track.objective_id))
            value = fraction
        else:
            if key_result.kind is KeyResultKind.kpi:
                stats = track.stats.setdefault(key_result.id, WindowStats())
            check_in = track.check_ins.get(key_result.id, {})
            value, fraction = measured_progress(key_result, check_in, stats)
        cited = batch.lineage.get((track.objective_id, key_result.id), [])
        evaluation = evaluate_key_result(
            track.definition.period,
            value,
            fraction,
            lineage_of(key_result, stats, cited),
            now,
            self.application.thresholds,
        )
        track.record_key_result(
            key_result.id,
            stats=stats,
            value=evaluation.value,
            progress=evaluation.progress,
            score=evaluation.score,
            expected=evaluation.expected,
            status=evaluation.status,
            as_of=evaluation.as_of,
            lineage=evaluation.lineage,
        )

    def _evaluate_objective(self, track: ObjectiveTrack, now: datetime) -> bool:
        """Record the objective's evaluation; returns whether it is published."""
        at = graded_at(track.active, track.archived_at, now)
        if at is None:
            return False
        evaluation = evaluate_objective(
            track.definition, track.evaluations, at, self.application.thresholds
        )
        return track.record_objective(
            score=evaluation.score,
            expected=evaluation.expected,
            status=evaluation.status,
            as_of=evaluation.as_of,
            final=evaluation.final,
            success=evaluation.success,
        )

    # -- as time passes ---------------------------------------------------------------------

    def reevaluate(self) -> int:
        """Record the statuses that changed only because time passed (pace follows the
        elapsed part of the period; a period that closed gets its final grade). Run on a
        timer; returns how many objectives changed."""
        now = self.clock()
        thresholds = self.application.thresholds
        with self.application.write_lock, UnitOfWork(self.application) as unit:
            batch = Batch.of(unit, self.application)
            for objective_id in list(self.application.objectives):
                track = batch.track(objective_id)
                if track is None or not track.active:
                    continue
                period = track.definition.period
                if objective_status_moved(track.evaluation, period, now, thresholds):
                    batch.dirty.add((objective_id, ""))
                batch.dirty.update(
                    (objective_id, kr.id)
                    for kr in track.definition.key_results
                    if key_result_status_moved(
                        track.evaluations.get(kr.id), period, now, thresholds
                    )
                )
            self._evaluate(batch, now)
            self._settle_gaps(batch, now)  # a KPI that stopped reporting turns stale
            self._record_unconsumed(batch.unit)
            return len({objective_id for objective_id, _ in batch.dirty})

    def settle_pending_gaps(self) -> bool:
        """Settle the gaps that batches left pending (see ``gap_settle_seconds``); run on a
        timer. Returns whether there were any."""
        with self.application.write_lock:
            if not self._gaps_pending:
                return False
            with UnitOfWork(self.application) as unit:
                batch = Batch.of(unit, self.application)
                try:
                    self._settle_gaps(batch, self.clock())
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

    # -- gaps -------------------------------------------------------------------------------

    def _settle_gaps(self, batch: Batch, now: datetime) -> None:
        # Settled in this unit. Should a batch's unit not commit, the batch is applied again
        # and settles again or leaves the gaps pending for the timer.
        self._gaps_pending = False
        self._next_settlement = time.monotonic() + self.gap_settle_seconds
        tracks = {t.objective_id: t for t in self.application.tracks()} | batch.tracks
        facts = [self._objective_facts(track) for track in tracks.values()]
        defined = []
        for key in self.application.kpis | set(batch.kpis):
            kpi = batch.kpis.get(key) or self.application.kpi_track(key)
            if kpi is not None and kpi.definition is not None:
                defined.append(self._kpi_facts(kpi, now))
        found = batch.unit.get(GAP_BOARD_ID)
        board = found if isinstance(found, GapBoard) else GapBoard()
        detected, resolved = gap_changes(board.open, self._gaps.detect(facts, defined, now), now)
        for gap, since in detected:
            board.open_gap(
                gap.gap_id, gap.kind.value, gap.subject, gap.message, gap.owner, gap.period, since
            )
        for gap_id in resolved:
            closing = board.open[gap_id]
            board.close_gap(
                gap_id, closing["kind"], closing["subject"], "the condition no longer holds"
            )
        if detected or resolved or found is None:
            batch.unit.add(board)

    # A track changes only in a batch's copy, so facts drawn from a track object stay true for
    # as long as that object is the one in the cache: they are kept with it and reused while
    # it is, and so are the gaps drawn from them (``GapMemo``).

    def _objective_facts(self, track: ObjectiveTrack) -> ObjectiveFacts:
        kept = self._facts_of_objectives.get(track.objective_id)
        if kept is not None and kept[0] is track:
            return kept[1]
        facts = objective_facts(track)
        self._facts_of_objectives[track.objective_id] = (track, facts)
        return facts

    def _kpi_facts(self, kpi: KPITrack, now: datetime) -> KPIFacts:
        """Kept until the instant they may change with time."""
        kept = self._facts_of_kpis.get(kpi.key)
        if kept is not None and kept[0] is kpi and (kept[2] is None or now < kept[2]):
            return kept[1]
        facts, holds_until = kpi_facts(
            kpi, now, self.application.stagnation_window, self.application.stagnation_tolerance
        )
        self._facts_of_kpis[kpi.key] = (kpi, facts, holds_until)
        return facts
