"""The scoring rules (docs/architecture.md, "Scoring"), as pure functions of values and
instants (no I/O).

A key result's *progress* runs from its baseline (0) to its target (1) in either direction
("reduce churn from 8% to 5%" progresses as churn falls); its *score* is progress clamped to
[0, 1]. Pace compares progress with the elapsed fraction of the period.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from contracts import Aggregation, ObjectiveType, PaceStatus


@dataclass(frozen=True)
class PaceThresholds:
    """How far behind the elapsed time a key result may be and still be on track or at risk."""

    on_track: float = -0.2
    at_risk: float = -0.4


def progress(value: float, baseline: float, target: float) -> float:
    """Unclamped progress from baseline (0) to target (1); baseline must differ from target."""
    return (value - baseline) / (target - baseline)


def clamp(fraction: float) -> float:
    return min(max(fraction, 0.0), 1.0)


def milestone_progress(
    done: bool | None, checklist: list[str], checklist_done: list[str] | None
) -> float:
    """Done or not; with a checklist, the fraction of its items done."""
    if checklist and checklist_done is not None:
        return len(set(checklist_done) & set(checklist)) / len(checklist)
    return 1.0 if done else 0.0


def weighted_mean(scores: Iterable[tuple[float, float]]) -> float | None:
    """Mean of (score, weight) pairs by weight; None when the weights add up to nothing.
    Exact sums: the mean does not depend on the order of the pairs (a roll-up's children
    come in the order the service happened to learn of them)."""
    pairs = list(scores)
    total = math.fsum(weight for _, weight in pairs)
    if total <= 0:
        return None
    return math.fsum(score * weight for score, weight in pairs) / total


@functools.lru_cache(maxsize=1024)
def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """The instants a period covers: from the start of its first day to the end of its last
    day (both dates inclusive), in UTC. Remembered: every reading is placed in the periods of
    the key results on its KPI, and a service knows few periods."""
    return (
        datetime.combine(start, time.min, tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    )


def expected_fraction(start: date, end: date, at: datetime) -> float:
    """The elapsed fraction of the period at instant ``at``, within [0, 1]."""
    begins, ends = period_bounds(start, end)
    return clamp((at - begins) / (ends - begins))


def pace(
    fraction: float, expected: float, thresholds: PaceThresholds = PaceThresholds()
) -> PaceStatus:
    """achieved at 1; otherwise on track, at risk or off track by how far progress trails
    the elapsed time."""
    if fraction >= 1.0:
        return PaceStatus.achieved
    # Rounded: 0.6 - 0.8 is -0.20000000000000007 in binary floating point, yet on track.
    delta = round(fraction - expected, 9)
    if delta >= thresholds.on_track:
        return PaceStatus.on_track
    if delta >= thresholds.at_risk:
        return PaceStatus.at_risk
    return PaceStatus.off_track


def succeeded(score: float, objective_type: ObjectiveType) -> bool:
    """The final grade's verdict: an aspirational (stretch) objective succeeds from 0.7, a
    committed one only when fully achieved."""
    return score >= (0.7 if objective_type is ObjectiveType.aspirational else 1.0)


def _reference_dict(reference: ReadingRef | None) -> dict[str, Any] | None:
    if reference is None:
        return None
    return {
        "reading_id": reference.reading_id,
        "value": reference.value,
        "observed_at": reference.observed_at.isoformat(),
        "position": reference.position,
        "source": reference.source,
    }


@dataclass(frozen=True)
class ReadingRef:
    """A KPI reading as the alignment service knows it: enough to aggregate and to cite."""

    reading_id: str
    value: float
    observed_at: datetime
    position: int
    #: The system the reading came from, for auditors following a score's lineage.
    source: str = ""


@dataclass
class WindowStats:
    """A KPI's readings inside one key result's period, folded incrementally.

    Readings only ever arrive (never leave), so sum, count, min, max and the latest by
    observed time fold in O(1) each, in any arrival order, with the same result. Each reading
    must be folded once: the exactly-once consumer guarantees it, so no ids are kept.
    """

    count: int = 0
    #: The sum as exact partial sums: a plain running float sum would depend on the order
    #: readings arrive in (0.1 + 0.2 + 0.3 differs from 0.3 + 0.2 + 0.1).
    partials: list[float] = field(default_factory=list)
    low: ReadingRef | None = None
    high: ReadingRef | None = None
    latest: ReadingRef | None = None

    @property
    def total(self) -> float:
        return math.fsum(self.partials)

    def copy(self) -> WindowStats:
        """An independent copy (the readings it cites are immutable, and shared)."""
        return WindowStats(self.count, list(self.partials), self.low, self.high, self.latest)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly, as stored in evaluation events."""
        return {
            "count": self.count,
            "partials": list(self.partials),
            "low": _reference_dict(self.low),
            "high": _reference_dict(self.high),
            "latest": _reference_dict(self.latest),
        }

    def add(self, reading: ReadingRef) -> None:
        self.extend((reading,))

    def extend(self, readings: Iterable[ReadingRef]) -> None:
        """Fold in each reading. What they are compared to is held in locals: a batch folds
        many readings of one KPI at a time."""
        partials = self.partials
        low, high, latest = self.low, self.high, self.latest
        count = self.count
        for reading in readings:
            count += 1
            add_exactly(partials, reading.value)
            if low is None or (reading.value, reading.reading_id) < (low.value, low.reading_id):
                low = reading
            if high is None or (reading.value, reading.reading_id) > (
                high.value,
                high.reading_id,
            ):
                high = reading
            if latest is None or (reading.observed_at, reading.reading_id) > (
                latest.observed_at,
                latest.reading_id,
            ):
                latest = reading
        self.count, self.low, self.high, self.latest = count, low, high, latest

    def value(self, aggregation: Aggregation) -> float | None:
        """The aggregated value; None when no reading fell in the window (except count: 0)."""
        if aggregation is Aggregation.count:
            return float(self.count)
        if self.count == 0:
            return None
        if aggregation is Aggregation.sum:
            return self.total
        if aggregation is Aggregation.avg:
            return self.total / self.count
        chosen = {
            Aggregation.min: self.low,
            Aggregation.max: self.high,
            Aggregation.latest: self.latest,
        }[aggregation]
        assert chosen is not None
        return chosen.value

    def determining(self, aggregation: Aggregation) -> ReadingRef | None:
        """The one reading that determines the value, for latest, min and max."""
        return {
            Aggregation.min: self.low,
            Aggregation.max: self.high,
            Aggregation.latest: self.latest,
        }.get(aggregation)


def add_exactly(partials: list[float], value: float) -> None:
    """Add ``value`` to a sum kept as non-overlapping partials (Shewchuk's algorithm, as
    ``math.fsum`` does it), so that the total is exact whatever the order of additions."""
    kept = 0
    for partial in partials:
        if abs(value) < abs(partial):
            value, partial = partial, value
        high = value + partial
        low = partial - (high - value)
        if low:
            partials[kept] = low
            kept += 1
        value = high
    partials[kept:] = [value]


def in_window(observed_at: datetime, start: date, end: date) -> bool:
    begins, ends = period_bounds(start, end)
    return begins <= observed_at < ends
