"""``make bench``: measure, on one fresh broker, a raw consume-and-produce pass-through and the
metrics service's sustained ingest (``kpi.readings`` to ``KPIRecorded`` stored and published),
and print them as a Markdown table (also written to ``var/bench/results.json``).

``BENCH_SCALE`` multiplies the number of readings (default 1: 100,000 readings).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts import GOAL_EVENTS, KPI_READINGS, METRICS_EVENTS
from services.shared.broker import TOPIC_PARTITIONS, EmbeddedBroker, ensure_topics
from tests.support import ServiceProcess, free_port, wait_caught_up, wait_for

RESULTS = Path("var/bench/results.json")
KPI_COUNT = 100


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""


def readings(count: int, first: int = 0) -> list[tuple[bytes, bytes]]:
    """Distinct readings spread over ``KPI_COUNT`` KPIs, keyed by KPI as sources do."""
    start = datetime(2026, 10, 1, tzinfo=UTC)
    messages = []
    for n in range(first, first + count):
        kpi = f"kpi_{n % KPI_COUNT:03d}"
        reading = {
            "kpi": kpi,
            "value": float(n % 977),
            "source": "bench",
            "reading_id": f"r{n}",
            "observed_at": (start + timedelta(seconds=n)).isoformat(),
        }
        messages.append((kpi.encode(), json.dumps(reading).encode()))
    return messages


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Produce everything; returns when the first message was sent (monotonic)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        began = time.monotonic()
        pending = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*pending)
        return began
    finally:
        await producer.stop()


async def pass_through(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Messages/s of a raw consume-and-produce loop (no processing) through the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    partitions = TOPIC_PARTITIONS[KPI_READINGS]
    await admin.create_topics(
        [NewTopic("bench.source", partitions, 1), NewTopic("bench.sink", partitions, 1)]
    )
    await admin.close()
    await produce(bootstrap, "bench.source", messages)
    consumer = AIOKafkaConsumer(
        "bench.source",
        bootstrap_servers=bootstrap,
        group_id="bench-pass-through",
        auto_offset_reset="earliest",
        max_poll_records=2000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    try:
        moved, began = 0, None
        while moved < len(messages):
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if began is None and batches:
                began = time.monotonic()
            sent = [
                await producer.send("bench.sink", record.value, key=record.key)
                for records in batches.values()
                for record in records
            ]
            await asyncio.gather(*sent)
            await consumer.commit()
            moved += len(sent)
        assert began is not None
        return moved / (time.monotonic() - began)
    finally:
        await consumer.stop()
        await producer.stop()


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def ingest(bootstrap: str, root: Path, messages: list[tuple[bytes, bytes]]) -> list[Figure]:
    data_dir = root / "metrics"
    data_dir.mkdir()
    service = ServiceProcess("metrics", data_dir, bootstrap).start()
    try:
        for n in range(KPI_COUNT):
            httpx.put(
                f"{service.url}/kpis/kpi_{n:03d}",
                json={
                    "name": f"KPI {n}",
                    "direction": "higher_is_better",
                    "target": 500,
                    "warning": 250,
                    "interval": "PT1H",
                },
            ).raise_for_status()
        expected = len(messages) + KPI_COUNT  # one event per reading, one per definition

        stored_at: list[float] = []

        def all_published() -> bool:
            readiness = service.readiness()
            if not stored_at and readiness["log_position"] >= expected:
                stored_at.append(time.monotonic())
            return bool(readiness["outbox_position"] >= expected)

        began = asyncio.run(produce(bootstrap, KPI_READINGS, messages))
        wait_for(all_published, within=3600, what="every reading stored and published")
        elapsed = time.monotonic() - began
        stored = stored_at[0] - began
        assert service.process is not None
        rss = peak_rss_bytes(service.process.pid)
    finally:
        service.stop()
    return [
        Figure(
            "ingest",
            len(messages) / elapsed,
            "readings/s",
            "kpi.readings -> KPIRecorded stored and published",
        ),
        Figure(
            "ingest (stored only)",
            len(messages) / stored,
            "readings/s",
            "kpi.readings -> KPIRecorded stored, publishing still behind",
        ),
        Figure("metrics peak RSS", rss / 2**20, "MiB", f"after {len(messages):,} readings"),
    ]


def alignment_rebuild(bootstrap: str, root: Path) -> list[Figure]:
    """A fresh alignment service rebuilds from goal.events and metrics.events (the readings
    the ingest left there): how long until it has applied everything, and at what rate."""
    (root / "goal").mkdir()
    goal = ServiceProcess("goal", root / "goal", bootstrap).start()
    try:
        aggregations = ("latest", "sum", "avg", "max", "count")
        for n in range(KPI_COUNT // 5):
            httpx.post(
                f"{goal.url}/objectives",
                json={
                    "title": f"Objective {n}",
                    "owner": f"owner-{n % 7}",
                    "org_unit": "bench",
                    "level": "company",
                    "period": "2026",
                    "key_results": [
                        {
                            "title": f"KR {n}.{k}",
                            "kind": "kpi",
                            "kpi": f"kpi_{5 * n + k:03d}",
                            "aggregation": aggregations[k],
                            "baseline": 0,
                            "target": 1000,
                        }
                        for k in range(5)
                    ],
                },
            ).raise_for_status()
        wait_for(lambda: goal.readiness()["outbox_backlog"] == 0, what="goal events published")
    finally:
        goal.stop()
    events = sum(
        asyncio.run(end_offsets(bootstrap, topic)) for topic in (GOAL_EVENTS, METRICS_EVENTS)
    )
    (root / "alignment").mkdir()
    began = time.monotonic()
    alignment = ServiceProcess("alignment", root / "alignment", bootstrap).start()
    try:
        wait_caught_up(bootstrap, "okr-alignment", [GOAL_EVENTS, METRICS_EVENTS], within=3600)
        elapsed = time.monotonic() - began
        assert alignment.process is not None
        rss = peak_rss_bytes(alignment.process.pid)
    finally:
        alignment.stop()
    return [
        Figure(
            "alignment rebuild",
            elapsed,
            "s",
            f"{events:,} events from goal.events and metrics.events, start included",
        ),
        Figure("alignment rebuild rate", events / elapsed, "events/s", "empty store to caught up"),
        Figure("alignment peak RSS", rss / 2**20, "MiB", "after the rebuild"),
    ]


def pipeline(bootstrap: str, root: Path, count: int) -> list[Figure]:
    """All three services on the stores of the earlier stages: the full pipeline rate, and the
    latency from a reading's publish to its key result's score visible over HTTP at a steady
    1,000 readings/s."""
    services = {
        name: ServiceProcess(name, root / name, bootstrap).start()
        for name in ("metrics", "goal", "alignment")
    }
    try:
        metrics, goal, alignment = services["metrics"], services["goal"], services["alignment"]
        httpx.put(
            f"{metrics.url}/kpis/probe",
            json={
                "name": "Latency probe",
                "direction": "higher_is_better",
                "target": 1e9,
                "interval": "PT1H",
            },
        ).raise_for_status()
        probe = httpx.post(
            f"{goal.url}/objectives",
            json={
                "title": "Probe",
                "owner": "bench",
                "org_unit": "bench",
                "level": "company",
                "period": "2026",
                "key_results": [
                    {
                        "title": "Probe",
                        "kind": "kpi",
                        "kpi": "probe",
                        "aggregation": "latest",
                        "baseline": 0,
                        "target": 1e9,
                    }
                ],
            },
        ).json()
        probe_url = f"{alignment.url}/objectives/{probe['objective']['id']}/score"
        wait_for(lambda: httpx.get(probe_url).status_code == 200, what="the probe objective")

        head = metrics.readiness()["log_position"]
        began = asyncio.run(produce(bootstrap, KPI_READINGS, readings(count, first=count)))
        wait_for(
            lambda: metrics.readiness()["outbox_position"] >= head + count,
            within=3600,
            what="the readings stored and published",
        )
        wait_caught_up(bootstrap, "okr-alignment", [METRICS_EVENTS], within=3600)
        rate = count / (time.monotonic() - began)
        latencies = asyncio.run(steady_latency(bootstrap, probe_url, count))
    finally:
        for service in services.values():
            service.stop()
    ranked = sorted(latencies)

    def percentile(share: float) -> float:
        return ranked[min(int(share * len(ranked)), len(ranked) - 1)] * 1000

    return [
        Figure(
            "pipeline", rate, "readings/s", "kpi.readings -> KeyResultScored stored, three services"
        ),
        Figure(
            "latency p50",
            percentile(0.50),
            "ms",
            f"publish -> KR score over HTTP, steady 1,000 readings/s, {len(ranked)} probes",
        ),
        Figure("latency p95", percentile(0.95), "ms", ""),
        Figure("latency p99", percentile(0.99), "ms", "target: under 250 ms"),
    ]


async def steady_latency(bootstrap: str, probe_url: str, count: int) -> list[float]:
    """Load at 1,000 readings/s; every 100 ms a probe reading (value = its number) is sent,
    and its latency is the time until the probe key result shows that value (or a later one:
    the probe's readings are in order, so a later value means it was applied)."""
    seconds = max(10.0, min(30.0, count / 10_000))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    sent: dict[int, float] = {}
    latencies: list[float] = []
    load = readings(int(seconds * 1000) + 1000, first=10 * count)
    start = datetime(2026, 11, 1, tzinfo=UTC)

    async def send_load() -> None:
        began = time.monotonic()
        for n, (key, value) in enumerate(load):
            due = began + n / 1000
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())  # pacing, not synchronisation
            if n % 100 == 0:
                number = n // 100 + 1
                probe = {
                    "kpi": "probe",
                    "value": float(number),
                    "source": "bench",
                    "reading_id": f"probe-{number}",
                    "observed_at": (start + timedelta(seconds=number)).isoformat(),
                }
                sent[number] = time.monotonic()
                await producer.send(KPI_READINGS, json.dumps(probe).encode(), key=b"probe")
            await producer.send(KPI_READINGS, value, key=key)
            if time.monotonic() - began > seconds:
                return

    async def watch(client: httpx.AsyncClient, loader: asyncio.Task[None]) -> None:
        seen = 0
        while not (loader.done() and seen >= max(sent, default=0)):
            answer = (await client.get(probe_url)).json()
            value = answer["key_results"][0]["value"] or 0
            now = time.monotonic()
            for number in range(seen + 1, int(value) + 1):
                latencies.append(now - sent[number])
            seen = max(seen, int(value))
            await asyncio.sleep(0.005)  # polling interval of the observer

    async with httpx.AsyncClient(timeout=10) as client:
        loader = asyncio.create_task(send_load())
        await asyncio.wait_for(watch(client, loader), timeout=seconds + 120)
    await producer.stop()
    return latencies


async def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    count = int(100_000 * scale)
    root = Path(tempfile.mkdtemp(prefix="okr-bench-"))
    broker = EmbeddedBroker(root / "kafka", port=free_port())
    broker.start()
    try:
        asyncio.run(ensure_topics({"bootstrap_servers": broker.bootstrap_servers}))
        messages = readings(count)
        limit = asyncio.run(pass_through(broker.bootstrap_servers, messages))
        figures = [
            Figure(
                "pass-through limit", limit, "messages/s", "raw consume-and-produce, same broker"
            )
        ]
        figures += ingest(broker.bootstrap_servers, root, messages)
        figures += alignment_rebuild(broker.bootstrap_servers, root)
        figures += pipeline(broker.bootstrap_servers, root, count)
        figures.insert(
            3, Figure("ingest / limit", figures[1].value / limit, "ratio", "target: at least 1/3")
        )
        pipeline_rate = next(f.value for f in figures if f.name == "pipeline")
        figures.append(
            Figure("pipeline / limit", pipeline_rate / limit, "ratio", "target: at least 1/4")
        )
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{count:,} readings, {KPI_COUNT} KPIs, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}\n"
    )
    print("| figure | value | unit | note |\n|---|---:|---|---|")
    for figure in figures:
        value = f"{figure.value:,.2f}" if figure.value < 10 else f"{figure.value:,.0f}"
        print(f"| {figure.name} | {value} | {figure.unit} | {figure.note} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"readings": count, "figures": [asdict(f) for f in figures]}, indent=2) + "\n"
    )
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
