"""The services' hot paths measured in one process, without a broker: where the CPU of a
reading goes, stage by stage. ``make bench`` gives the figures of the issue; this gives the
figures to compare before and after a change to the code on those paths, and a profile.

    python -m tests.bench.inprocess [--readings N] [--batch N] [--profile metrics|alignment]

Stages, each on its own SQLite store in a scratch directory:

- metrics parse: raw ``kpi.readings`` bytes to ``KPIReading`` (the consumer's decoding);
- metrics record: batches of readings recorded (events, idempotency keys, chain);
- metrics relay: stored ``KPIRecorded`` events to message bytes (the outbox's encoding);
- alignment apply: the goal and metrics messages parsed and applied in consumer batches
  (``--batch``; policy, scoring, gaps, commit), as the alignment service's consumer does;
- alignment relay: its stored events to message bytes.

The bench setup is used (1,000 KPIs, 200 objectives with five KPI key results each).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from contracts import GOAL_EVENTS, METRICS_EVENTS, Envelope, parse_event
from services.alignment.application import AlignmentApplication
from services.alignment.policy import AlignmentPolicy
from services.alignment.publishing import integration_event as alignment_message
from services.goal.application import GoalApplication
from services.goal.commands import ObjectiveCommand
from services.goal.publishing import integration_event as goal_message
from services.metrics.application import MetricsApplication
from services.metrics.commands import KPICommand
from services.metrics.policy import parse_reading
from services.metrics.publishing import integration_event as metrics_message
from services.shared.consumer import TrackedConsumer, event_type_header
from services.shared.integration_events import Translator, encode_messages
from services.shared.runtime import settle_heap
from services.shared.settings import Settings
from services.shared.store import ServiceApplication, store_environment
from tests.bench.__main__ import (
    COMPANY_OBJECTIVES,
    KPI_COUNT,
    OBJECTIVE_COUNT,
    kpi_key,
    objective,
    reading,
)

A = TypeVar("A", bound=ServiceApplication)


@dataclass
class Record:
    """What a consumed Kafka record brings the consumer (``ConsumedRecord``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class Stopwatch:
    """Seconds per named stage, accumulated; optionally one stage under cProfile."""

    def __init__(self, profiled: str | None) -> None:
        self.seconds: dict[str, float] = {}
        self.items: dict[str, int] = {}
        self._profiled = profiled
        self.profile = cProfile.Profile()

    @contextmanager
    def stage(self, name: str, items: int) -> Iterator[None]:
        profiling = self._profiled is not None and name.startswith(self._profiled)
        if profiling:
            self.profile.enable()
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began
            self.items[name] = self.items.get(name, 0) + items
            if profiling:
                self.profile.disable()


def application(kind: type[A], root: Path, name: str, **extra: Any) -> A:
    env = store_environment(Settings(service=name, data_dir=root / name))
    return kind(env=env | extra)


def stored_messages(app: ServiceApplication, topic: str, translate: Translator) -> list[Record]:
    """The events stored by ``app`` as the outbox publishes them, as records of ``topic``."""
    records: list[Record] = []
    after = 0
    while True:
        page = app.recorder.select_notifications(after + 1, 1000)
        events = [(n.id, app.mapper.to_domain_event(n)) for n in page]
        for key, value, headers in encode_messages(events, translate):
            records.append(Record(topic, 0, len(records), key, value, headers))
        if len(page) < 1000:
            return records
        after = page[-1].id


def held_events(app: ServiceApplication) -> list[tuple[int, Any]]:
    """The (position, domain event) pairs ``app`` commits from now on, as the relay hears
    them: the caller clears the list once it has encoded them."""
    held: list[tuple[int, Any]] = []
    app.on_recorded(
        lambda recordings: held.extend((r.notification.id, r.domain_event) for r in recordings)
    )
    return held


def metrics_stages(root: Path, count: int, batch: int, watch: Stopwatch) -> list[Record]:
    metrics = application(MetricsApplication, root, "metrics")
    for n in range(KPI_COUNT):
        command = KPICommand(name=f"KPI {n}", direction="higher_is_better", target=900.0)
        metrics.define_kpi(kpi_key(n), command, actor="bench")
    held = held_events(metrics)
    raw = [json.dumps(reading(n)).encode() for n in range(count)]
    settle_heap()
    for start in range(0, count, batch):
        chunk = raw[start : start + batch]
        with watch.stage("metrics parse", len(chunk)):
            readings = [parse_reading(value) for value in chunk]
        with watch.stage("metrics record", len(chunk)):
            metrics.record(readings)
        with watch.stage("metrics relay", len(held)):
            encode_messages(held, metrics_message)
        held.clear()
    return stored_messages(metrics, METRICS_EVENTS, metrics_message)


def goal_messages(root: Path) -> list[Record]:
    goal = application(GoalApplication, root, "goal")
    parents: list[str] = []
    for n in range(OBJECTIVE_COUNT):
        created, _ = goal.create_objective(
            ObjectiveCommand.model_validate(objective(n, parents)), actor="bench"
        )
        if n < COMPANY_OBJECTIVES:
            parents.append(str(created.id))
    return stored_messages(goal, GOAL_EVENTS, goal_message)


def alignment_stages(root: Path, messages: Sequence[Record], batch: int, watch: Stopwatch) -> None:
    alignment = application(AlignmentApplication, root, "alignment")
    held = held_events(alignment)
    settle_heap()  # as the service does once its state is loaded
    policy = AlignmentPolicy(alignment, Settings().gap_settle_seconds)  # as the service's
    consumer = TrackedConsumer(alignment, policy, dead_letters=None)  # type: ignore[arg-type]
    for start in range(0, len(messages), batch):
        chunk = messages[start : start + batch]
        with watch.stage("alignment parse", len(chunk)):
            parsed: list[tuple[Any, Envelope]] = [
                (record, parse_event(record.value or b"", event_type_header(record)))
                for record in chunk
            ]
        with watch.stage("alignment apply", len(chunk)):
            refused = consumer._apply(parsed)
        assert not refused, refused
        with watch.stage("alignment relay", len(held)):
            encode_messages(held, alignment_message)
        watch.items["alignment stored"] = watch.items.get("alignment stored", 0) + len(held)
        held.clear()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--profile", choices=["metrics", "alignment"], default=None)
    parser.add_argument("--batch", type=int, default=2000, help="records per consumed batch")
    parser.add_argument("--top", type=int, default=30)
    arguments = parser.parse_args(argv)
    watch = Stopwatch(arguments.profile)
    with tempfile.TemporaryDirectory(prefix="okr-inprocess-") as scratch:
        root = Path(scratch)
        metrics = metrics_stages(root, arguments.readings, arguments.batch, watch)
        records = goal_messages(root) + metrics
        alignment_stages(root, records, arguments.batch, watch)
    print(
        f"{arguments.readings:,} readings; {watch.items.get('alignment stored', 0):,} events "
        "stored by alignment"
    )
    print("| stage | items | seconds | µs per item | items/s |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in watch.seconds.items():
        items = watch.items[name]
        print(
            f"| {name} | {items:,} | {seconds:.2f} | {1e6 * seconds / max(items, 1):.1f} "
            f"| {items / seconds:,.0f} |"
        )
    if arguments.profile:
        stats = pstats.Stats(watch.profile).sort_stats("cumulative")
        stats.print_stats(arguments.top)
        stats.sort_stats("tottime").print_stats(arguments.top)


if __name__ == "__main__":
    main()
