"""The state one batch of consumed events works on: what its events changed, and the alignment
graph as the batch sees it (its own copies of the tracks it touched over the committed ones).
Made by the policy per unit of work; gone when the batch is stored."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from services.alignment.application import AlignmentApplication
from services.alignment.domain import KPITrack, ObjectiveTrack
from services.alignment.evaluation import Citable
from services.alignment.scoring import ReadingRef
from services.shared.consumer import UnitOfWork

#: Roll-ups propagate up the cascade; a cycle cannot exist (the goal service refuses them),
#: but a bound keeps a bad producer from looping the consumer.
MAX_CASCADE_DEPTH = 50

#: A KPI reading as a batch gathers it: the reading, its health, when metrics recorded it.
BatchReading = tuple[ReadingRef, str, datetime]


@dataclass
class Batch:
    """One batch's state, gathered by the policy's ``apply`` and settled by its ``finish``."""

    application: AlignmentApplication
    unit: UnitOfWork
    #: KPI key -> the readings of the batch, and the latest instant one was recorded.
    readings: dict[str, list[BatchReading]] = field(default_factory=lambda: defaultdict(list))
    arrived: dict[str, datetime] = field(default_factory=dict)
    redefined: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)
    #: (objective id, key result id) to evaluate; an empty key result id: the objective.
    dirty: set[tuple[str, str]] = field(default_factory=set)
    #: What the next evaluation of a key result cites, by (objective id, key result id).
    lineage: dict[tuple[str, str], list[Citable]] = field(default_factory=lambda: defaultdict(list))
    tracks: dict[str, ObjectiveTrack] = field(default_factory=dict)
    kpis: dict[str, KPITrack] = field(default_factory=dict)
    #: KPI key -> objectives (re)defined in this batch that link it (the application's index
    #: knows only committed definitions); made once, when scoring starts.
    redefined_links: dict[str, set[str]] | None = None

    @staticmethod
    def of(unit: UnitOfWork, application: AlignmentApplication) -> Batch:
        """The batch of a unit of work, which carries it from ``apply`` to ``finish``."""
        return unit.state(Batch, lambda: Batch(application, unit))

    def dirty_objective(self, track: ObjectiveTrack) -> None:
        self.dirty.update((track.objective_id, kr.id) for kr in track.definition.key_results)

    # -- the graph as the batch sees it -----------------------------------------------------

    def track(self, objective_id: str) -> ObjectiveTrack | None:
        if objective_id in self.tracks:
            return self.tracks[objective_id]
        found = self.unit.get(ObjectiveTrack.create_id(objective_id))
        if isinstance(found, ObjectiveTrack):
            self.tracks[objective_id] = found
            return found
        return None

    def require_track(self, objective_id: str) -> ObjectiveTrack:
        track = self.track(objective_id)
        if track is None:
            raise LookupError(f"objective {objective_id} was never set")
        return track

    def kpi(self, key: str) -> KPITrack:
        if key not in self.kpis:
            found = self.unit.get(KPITrack.create_id(key))
            kpi = found if isinstance(found, KPITrack) else KPITrack(key, None)
            self.unit.add(kpi)
            self.kpis[key] = kpi
        return self.kpis[key]

    def linked(self, key: str) -> list[ObjectiveTrack]:
        """The objectives with a key result on the KPI, archived ones too: readings recorded
        before an archival may arrive after it."""
        if self.redefined_links is None:
            self.redefined_links = defaultdict(set)
            for objective_id in self.redefined:
                for key_result in self.tracks[objective_id].definition.key_results:
                    if key_result.kpi:
                        self.redefined_links[key_result.kpi].add(objective_id)
        ids = set(self.application.kpi_links.get(key, ())) | self.redefined_links.get(key, set())
        tracks = [self.track(objective_id) for objective_id in sorted(ids)]
        return [t for t in tracks if t is not None]

    def children(self, objective_id: str) -> list[ObjectiveTrack]:
        """The objectives aligned to this one."""
        committed = self.application.objectives
        ids = [o for o in committed if o != objective_id] + [
            o for o in self.tracks if o not in committed
        ]
        children = []
        for child_id in ids:
            child = self.track(child_id)
            if child is not None and child.definition.parent_id == objective_id:
                children.append(child)
        return children

    def depth(self, objective_id: str, depths: dict[str, int]) -> int:
        """How many parents an objective has above it (bounded, should a producer send a
        cycle), remembered in ``depths``."""
        if objective_id not in depths:
            depth, current = 0, self.track(objective_id)
            while (
                current is not None and current.definition.parent_id and depth < MAX_CASCADE_DEPTH
            ):
                depth += 1
                current = self.track(current.definition.parent_id)
            depths[objective_id] = depth
        return depths[objective_id]
