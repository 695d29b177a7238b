"""Where the latency stage's time goes, hop by hop: the bench's stages up to its latency stage
(on fewer readings if asked), then each probe reading followed through the topics by the
messages' own times. ``make bench`` gives the figures of the issue; this says which hop to
work on.

    python -m tests.bench.hops [--readings N] [--pipeline]

Hops of a probe reading (wall clocks of one host):

- metrics consume and store: sent to ``kpi.readings`` -> its ``KPIRecorded`` recorded
  (``occurred_at``: the batch's instant, before the commit);
- metrics commit and publish: recorded -> the ``KPIRecorded`` message on ``metrics.events``;
- alignment consume and score: that message -> the probe key result's ``KeyResultScored``
  recorded (the first with the probe's value or a later one);
- alignment commit and publish: recorded -> its message on ``alignment.events``.

The latency stage's own figures (to the score seen over HTTP) are printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import datetime

from aiokafka import ConsumerRecord

from contracts import ALIGNMENT_EVENTS, KPI_READINGS, METRICS_EVENTS
from services.shared.broker import ensure_topics, read_topic
from tests.bench.__main__ import (
    add_probe,
    alignment_rebuild,
    close_bench,
    ingest,
    latency,
    metrics_restart,
    open_bench,
    percentile,
    pipeline,
    set_objectives,
    settle,
    table,
)

HOPS = (
    "metrics consume and store",
    "metrics commit and publish",
    "alignment consume and score",
    "alignment commit and publish",
    "end to end, to the score published",
)


def seconds(record: ConsumerRecord) -> float:
    return float(record.timestamp) / 1000


def recorded(message: dict[str, object]) -> float:
    return datetime.fromisoformat(str(message["occurred_at"])).timestamp()


async def hops(bootstrap: str, probe_objective: str) -> dict[str, list[float]]:
    """Each hop's seconds, for every probe reading followed to its key result's score."""
    options = {"bootstrap_servers": bootstrap}
    sent: dict[str, float] = {}
    for record in await read_topic(options, KPI_READINGS):
        if record.key == b"probe" and record.value:
            sent[json.loads(record.value)["reading_id"]] = seconds(record)
    stored: dict[str, tuple[float, float]] = {}
    for record in await read_topic(options, METRICS_EVENTS):
        if record.key == b"probe" and record.value:
            message = json.loads(record.value)
            if message["event_type"] == "KPIRecorded":
                stored[message["payload"]["reading_id"]] = (recorded(message), seconds(record))
    scored: list[tuple[float, float, float]] = []  # value, recorded, published
    for record in await read_topic(options, ALIGNMENT_EVENTS):
        message = json.loads(record.value or b"{}")
        payload = message.get("payload", {})
        if (
            message.get("event_type") == "KeyResultScored"
            and payload["objective_id"] == probe_objective
            and payload["value"] is not None
        ):
            scored.append((payload["value"], recorded(message), seconds(record)))
    return follow(sent, stored, scored)


def follow(
    sent: dict[str, float],
    stored: dict[str, tuple[float, float]],
    scored: list[tuple[float, float, float]],
) -> dict[str, list[float]]:
    """Each hop's seconds from the probes' times: ``sent`` by reading id, ``stored`` by
    reading id (recorded, published), ``scored`` the probe key result's scores in order
    (value, recorded, published). A probe is scored by the first score of its number or a
    later one (the probes' values count up) recorded after it."""
    timings: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for reading_id, began in sent.items():
        if reading_id not in stored:
            continue
        number = int(reading_id.removeprefix("probe-"))
        at, published = stored[reading_id]
        timings[HOPS[0]].append(at - began)
        timings[HOPS[1]].append(published - at)
        score = next((s for s in scored if s[0] >= number and s[1] >= at), None)
        if score is None:
            continue
        timings[HOPS[2]].append(score[1] - published)
        timings[HOPS[3]].append(score[2] - score[1])
        timings[HOPS[4]].append(score[2] - began)
    return timings


def report(timings: dict[str, list[float]]) -> str:
    rows = ["| hop | probes | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for hop, values in timings.items():
        shares = (0.5, 0.95, 0.99)
        cells = (f"{percentile(values, share):,.0f}" if values else "" for share in shares)
        rows.append(f"| {hop} | {len(values)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument(
        "--pipeline", action="store_true", help="run the pipeline stage too, as make bench does"
    )
    arguments = parser.parse_args(argv)
    # The limit only scales the ratios of ingest and pipeline, which this does not report.
    bench, broker = open_bench("kafka", "okr-hops-", arguments.readings, limit=1.0)
    try:
        asyncio.run(ensure_topics({"bootstrap_servers": broker.bootstrap_servers}))
        ingest(bench)
        set_objectives(bench)
        alignment_rebuild(bench)
        settle(bench)
        metrics_restart(bench)
        add_probe(bench)
        if arguments.pipeline:
            pipeline(bench)
        settle(bench)
        print(table(latency(bench)) + "\n")
        probe_objective = bench.probe_url.rsplit("/objectives/", 1)[1].split("/")[0]
        print(report(asyncio.run(hops(broker.bootstrap_servers, probe_objective))))
    finally:
        close_bench(bench, broker)


if __name__ == "__main__":
    main()
