"""The metrics service as a process, fed through ``kpi.readings`` by a plain Kafka client."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import KPI_READINGS, METRICS_EVENTS, dlq_topic
from services.shared.local_broker import ApacheKafka
from tests.stores import Store, both_stores
from tests.support import ServiceProcess, read_topic, wait_caught_up, wait_for

pytestmark = pytest.mark.integration

KPIS = {
    "net_promoter_score": {
        "name": "Net promoter score",
        "unit": "points",
        "direction": "higher_is_better",
        "target": 45,
        "warning": 30,
    },
    "customer_acquisition_cost": {
        "name": "Customer acquisition cost",
        "unit": "USD",
        "direction": "lower_is_better",
        "target": 200,
        "warning": 300,
    },
    "new_customers": {"name": "New customers", "direction": "higher_is_better", "target": 2},
}
START = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def kafka(own_kafka: ApacheKafka) -> ApacheKafka:
    """These tests count every record on the topics: each gets a broker of its own."""
    return own_kafka


@pytest.fixture
def metrics(kafka: ApacheKafka, data_dir: Path, store: Store) -> Iterator[ServiceProcess]:
    service = ServiceProcess(
        "metrics", data_dir, kafka.bootstrap_servers, extra_env=store.env("metrics")
    ).start()
    for key, definition in KPIS.items():
        httpx.put(f"{service.url}/kpis/{key}", json=definition).raise_for_status()
    yield service
    service.stop()


def reading(kpi: str, n: int, value: float) -> dict[str, Any]:
    return {
        "kpi": kpi,
        "value": value,
        "source": "crm",
        "reading_id": f"{kpi}-{n}",
        "observed_at": (START + timedelta(minutes=n)).isoformat(),
    }


def valid_readings(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Distinct readings with observed times shuffled, so most arrive late or early."""
    order = random.Random(seed)
    readings = [reading(list(KPIS)[n % 3], n, float(order.randint(0, 500))) for n in range(count)]
    order.shuffle(readings)
    return readings


MALFORMED: list[bytes] = [
    b"not json at all",
    b'{"kpi": "net_promoter_score", "value": 1, "source": "crm"}',  # no observed_at
    b'{"kpi": "net_promoter_score", "value": NaN, "source": "crm",'
    b' "observed_at": "2026-10-01T00:00:00Z"}',
    b'{"kpi": "net_promoter_score", "value": "high", "source": "crm",'
    b' "observed_at": "2026-10-01T00:00:00Z"}',
    b'{"kpi": "net_promoter_score", "value": 3, "source": "crm",'
    b' "observed_at": "2026-10-01T00:00:00"}',  # no timezone
    b'{"kpi": "no_such_kpi", "value": 3, "source": "crm", "observed_at": "2026-10-01T00:00:00Z"}',
    b'{"kpi": "customer_acquisition_cost", "value": 3, "unit": "EUR", "source": "crm",'
    b' "observed_at": "2026-10-01T00:00:00Z"}',
    b"[1, 2, 3]",
    b'{"kpi": "net_promoter_score", "value": 1, "source": "' + b"x" * 70_000 + b'"}',
    b"",
]


def key_of(message: bytes) -> bytes | None:
    """Outside systems key readings by KPI, so one KPI's readings keep their order."""
    try:
        return str(json.loads(message)["kpi"]).encode()
    except (ValueError, KeyError, TypeError):
        return None


async def _produce(bootstrap: str, messages: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(KPI_READINGS, message, key=key_of(message)) for message in messages
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def produce(kafka: ApacheKafka, messages: list[bytes]) -> None:
    asyncio.run(_produce(kafka.bootstrap_servers, messages))


def recorded_on_topic(kafka: ApacheKafka) -> dict[str, dict[str, Any]]:
    """KPIRecorded events on metrics.events by reading id (a republished copy counts once)."""
    found: dict[str, dict[str, Any]] = {}
    for record in read_topic(kafka.bootstrap_servers, METRICS_EVENTS):
        event = json.loads(record.value)
        if event["event_type"] == "KPIRecorded":
            previous = found.setdefault(event["payload"]["reading_id"], event)
            assert previous["event_id"] == event["event_id"]  # same reading, same event
    return found


def readings_count(service: ServiceProcess) -> int:
    return sum(kpi["readings"] for kpi in httpx.get(f"{service.url}/kpis").json())


def test_valid_unique_readings_recorded_once_malformed_dead_lettered(
    metrics: ServiceProcess, kafka: ApacheKafka
) -> None:
    valid = valid_readings(900)
    duplicates = [dict(r) for r in valid[:60]] + [
        dict(r, value=r["value"] + 1)
        for r in valid[60:90]  # same reading id, other value
    ]
    messages = [json.dumps(r).encode() for r in valid] + MALFORMED
    random.Random(3).shuffle(messages)
    # Duplicates come after their originals (per KPI, so per partition): the first one wins.
    messages += [json.dumps(r).encode() for r in duplicates]
    assert len(messages) == 1000
    produce(kafka, messages)

    wait_caught_up(kafka.bootstrap_servers, "okr-metrics", [KPI_READINGS], within=60)
    wait_for(lambda: len(recorded_on_topic(kafka)) >= 900, what="900 KPIRecorded published")
    assert readings_count(metrics) == 900
    published = recorded_on_topic(kafka)
    assert set(published) == {r["reading_id"] for r in valid}

    dead = read_topic(kafka.bootstrap_servers, dlq_topic(KPI_READINGS))
    assert sorted(record.value for record in dead) == sorted(MALFORMED)
    reasons = {record.value: dict(record.headers)["dlq.reason"].decode() for record in dead}
    assert "observed_at" in reasons[MALFORMED[1]]
    assert "no_such_kpi" in reasons[MALFORMED[5]]
    assert "EUR" in reasons[MALFORMED[6]]
    assert "exceeds" in reasons[MALFORMED[8]]

    for key in KPIS:
        mine = [r for r in valid if r["kpi"] == key]
        latest = max(mine, key=lambda r: r["observed_at"])
        status = httpx.get(f"{metrics.url}/kpis/{key}").json()
        assert status["value"] == latest["value"], key
        assert status["observed_at"].replace("Z", "+00:00") == latest["observed_at"]

    # The same batch again records nothing new.
    produce(kafka, messages)
    wait_caught_up(kafka.bootstrap_servers, "okr-metrics", [KPI_READINGS], within=60)
    assert readings_count(metrics) == 900
    assert len(recorded_on_topic(kafka)) == 900


@both_stores
def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    metrics: ServiceProcess, kafka: ApacheKafka
) -> None:
    valid = valid_readings(20_000, seed=11)
    produce(kafka, [json.dumps(r).encode() for r in valid])
    wait_for(lambda: readings_count(metrics) >= 2000, within=60, what="ingestion under way")
    metrics.kill()
    metrics.start()
    wait_caught_up(kafka.bootstrap_servers, "okr-metrics", [KPI_READINGS], within=120)
    assert readings_count(metrics) == 20_000
    wait_for(
        lambda: len(recorded_on_topic(kafka)) >= 20_000, within=120, what="every reading published"
    )
    assert set(recorded_on_topic(kafka)) == {r["reading_id"] for r in valid}
