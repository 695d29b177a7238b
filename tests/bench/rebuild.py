"""The alignment rebuild alone, repeated, alternating checkouts: before and after a change on
its path, measured in one run on the same topics. ``make bench`` rebuilds once, in a run of
eight minutes; this takes about a minute and a half to fill the topics, then under a minute
a rebuild.

    python -m tests.bench.rebuild [--readings N] [--rounds R] [CHECKOUT ...]

The bench's ingest stage fills ``metrics.events`` (N readings, 1,000 KPIs) and goal sets the
200 objectives; then, round after round, a fresh alignment service from each checkout (by
default this one; for another, ``git worktree add /tmp/before REV``) rebuilds from both
topics under a consumer group of its own, as the bench's alignment rebuild stage does, and
is stopped. Prints a line per rebuild: events/s, seconds, the service's CPU per event and its
peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts import GOAL_EVENTS, METRICS_EVENTS
from services.shared.broker import ensure_topics
from tests.bench.__main__ import (
    AS_DEPLOYED,
    PATIENCE,
    close_bench,
    consumed_to_end,
    cpu_seconds,
    end_offsets,
    ingest,
    open_bench,
    peak_rss_bytes,
    set_objectives,
)
from tests.support import ROOT, ServiceProcess


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    arguments = parser.parse_args(argv)
    # The limit only scales the ratio of ingest, which this does not report.
    bench, broker = open_bench("kafka", "okr-rebuild-", arguments.readings, limit=1.0)
    try:
        asyncio.run(ensure_topics({"bootstrap_servers": broker.bootstrap_servers}))
        ingest(bench)
        set_objectives(bench)
        topics = [GOAL_EVENTS, METRICS_EVENTS]
        events = sum(asyncio.run(end_offsets(bench.bootstrap, topics)).values())
        print(f"\n{events:,} events; each a fresh alignment service on an empty store\n")
        print("| round | checkout | events/s | seconds | CPU µs per event | peak RSS MB |")
        print("|---:|---|---:|---:|---:|---:|")
        for round_ in range(1, arguments.rounds + 1):
            for n, checkout in enumerate(arguments.checkouts):
                figures = rebuild(bench.root, bench.bootstrap, checkout, f"rebuild-{round_}-{n}")
                print(f"| {round_} | {checkout} | {figures.row(events)} |", flush=True)
    finally:
        close_bench(bench, broker)


@dataclass(frozen=True)
class Rebuilt:
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int

    def row(self, events: int) -> str:
        return (
            f"{events / self.seconds:,.0f} | {self.seconds:.1f} | "
            f"{self.cpu_seconds / events * 1e6:.1f} | {self.peak_rss_bytes / 2**20:.0f}"
        )


def rebuild(root: Path, bootstrap: str, checkout: Path, group: str) -> Rebuilt:
    """A fresh alignment service of ``checkout`` on an empty store, from process start until
    its group has committed both topics to their ends; then stopped."""
    data_dir = root / group
    data_dir.mkdir()
    service = ServiceProcess(
        "alignment",
        data_dir,
        bootstrap,
        extra_env=AS_DEPLOYED | {"OKR_KAFKA_CONSUMER_GROUP": group},
        root=checkout.resolve(),
    )
    began = time.monotonic()
    service.start(timeout=PATIENCE)
    try:
        asyncio.run(consumed_to_end(bootstrap, group, [GOAL_EVENTS, METRICS_EVENTS]))
        return Rebuilt(time.monotonic() - began, cpu_seconds(service.pid), peak_rss_bytes(service))
    finally:
        service.stop()


if __name__ == "__main__":
    main()
