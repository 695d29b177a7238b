"""The alignment service's application: the alignment graph's event log and the queries on it.
What consumed events change is the policy's (``policy``)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Recording
from eventsourcing.utils import get_topic

from services.alignment.domain import GAP_BOARD_ID, GapBoard, KPITrack, ObjectiveTrack
from services.alignment.scoring import PaceThresholds
from services.shared.errors import NotFound
from services.shared.store import ServiceApplication
from services.shared.telemetry import REPLAY_EVENTS, replaying

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
                for notification in self.notifications(topics=[get_topic(topic)]):
                    self._index(self.mapper.to_domain_event(notification))
                    REPLAY_EVENTS.inc()

    def aggregates_committed(self, aggregates: Iterable[Any]) -> None:
        # Where the library puts committed aggregates in its cache: the index follows.
        for aggregate in aggregates:
            if isinstance(aggregate, ObjectiveTrack):
                self._committed_tracks[aggregate.objective_id] = aggregate
            elif isinstance(aggregate, KPITrack):
                self._committed_kpis[aggregate.key] = aggregate

    def recorded(self, recordings: list[Recording[UUID]]) -> None:
        for recording in recordings:
            self._index(recording.domain_event)
        super().recorded(recordings)

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

    def key_result_history(
        self, key_result_id: str
    ) -> list[tuple[ObjectiveTrack.KeyResultEvaluated, int]]:
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
                    history.append((e, definition_position))
            return history
        raise NotFound(f"no key result {key_result_id}")
