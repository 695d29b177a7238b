"""Readings that clients other than the platform's own write to ``kpi.readings`` are recorded
by the metrics service (a process): kcat (librdkafka) with every compression codec, and
Kafka's own Java producer, plain and in transactions, whose aborted readings never count."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import KPI_READINGS
from services.shared.local_broker import ApacheKafka, kafka_jars
from tests.integration.test_metrics_service import KPIS, reading
from tests.support import ServiceProcess, unavailable, wait_for, wait_until

pytestmark = pytest.mark.integration

READING_PRODUCER = Path(__file__).parent / "java" / "ReadingProducer.java"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
Isolation = Literal["read_committed", "read_uncommitted"]


@pytest.fixture(scope="module")
def metrics(
    kafka: ApacheKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One service for the module: each test defines a KPI of its own and looks only at it."""
    data_dir = tmp_path_factory.mktemp("metrics") / "data"
    data_dir.mkdir()
    service = ServiceProcess("metrics", data_dir, kafka.bootstrap_servers).start()
    yield service
    service.stop()


def define_kpi(service: ServiceProcess, key: str) -> None:
    httpx.put(f"{service.url}/kpis/{key}", json=KPIS["new_customers"]).raise_for_status()


def recorded(service: ServiceProcess, key: str) -> dict[str, float]:
    """The KPI's recorded readings: value by reading id."""
    answer = httpx.get(f"{service.url}/kpis/{key}/readings", timeout=5)
    answer.raise_for_status()
    return {found["reading_id"]: found["value"] for found in answer.json()}


def values_by_id(readings: list[dict[str, Any]]) -> dict[str, float]:
    return {sent["reading_id"]: sent["value"] for sent in readings}


def stored_codecs(kafka: ApacheKafka) -> dict[str, str]:
    """The codec of the batch that holds each reading on ``kpi.readings``, by reading id, as
    Kafka's own tool reads the broker's segment files."""
    segments = Path(kafka.properties()["log.dirs"]).glob(f"{KPI_READINGS}-*/*.log")
    dump = subprocess.run(
        [
            *("java", "-cp", str(kafka_jars() / "*"), "kafka.tools.DumpLogSegments"),
            *("--print-data-log", "--files", ",".join(str(path) for path in segments)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    codecs: dict[str, str] = {}
    codec = ""
    for line in dump.stdout.splitlines():
        if line.startswith("baseOffset:"):
            codec = line.split(" compresscodec: ")[1].split()[0]
        elif " payload: " in line:
            codecs[json.loads(line.split(" payload: ", 1)[1])["reading_id"]] = codec
    return codecs


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_readings_are_recorded_whatever_the_codec(
    kafka: ApacheKafka, metrics: ServiceProcess, codec: str
) -> None:
    kcat = shutil.which("kcat") or unavailable("kcat is not installed (apt-get install kcat)")
    key = f"new_customers_by_kcat_{codec}"
    define_kpi(metrics, key)
    readings = [reading(key, n, float(n)) for n in range(5)]

    sent = subprocess.run(
        [
            *(kcat, "-P", "-b", kafka.bootstrap_servers, "-t", KPI_READINGS),
            *("-k", key, "-z", codec),
            # librdkafka sends a batch uncompressed when compressing would not shrink it,
            # likelier the smaller the batch: lingering gathers the readings into one.
            *("-X", "linger.ms=250"),
        ],
        input="".join(json.dumps(one) + "\n" for one in readings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr

    # Only readings stored in the codec prove that the service's consumer decodes it.
    codecs = stored_codecs(kafka)
    assert {codecs.get(one["reading_id"]) for one in readings} == {codec}
    wait_for(
        lambda: len(recorded(metrics, key)) >= len(readings), what=f"{codec} readings recorded"
    )
    assert recorded(metrics, key) == values_by_id(readings)


def produce_with_java(
    kafka: ApacheKafka, steps: list[str], transactional_id: str | None = None
) -> list[str]:
    """Run ``ReadingProducer.java`` on ``steps`` (its stdin); the lines it printed."""
    java = shutil.which("java") or unavailable(
        "Java 17+ is not installed (apt-get install openjdk-17-jre-headless)"
    )
    ran = subprocess.run(
        [
            *(java, "-cp", str(kafka_jars() / "*"), str(READING_PRODUCER)),
            *(kafka.bootstrap_servers, KPI_READINGS),
            *([transactional_id] if transactional_id else []),
        ],
        input="".join(step + "\n" for step in steps),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.splitlines()


def send(one: dict[str, Any]) -> str:
    """The producer's step that sends a reading, keyed by KPI as outside systems key them."""
    return f"send {one['kpi']} {json.dumps(one)}"


def positions(report: list[str]) -> list[tuple[int, int]]:
    """(partition, offset) of each reading the producer reported sent, in order."""
    sent = [line.split() for line in report if line.startswith("sent ")]
    return [(int(partition), int(offset)) for _, partition, offset in sent]


async def _read_partition(bootstrap: str, partition: int, isolation: Isolation) -> dict[int, str]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    await consumer.start()
    try:
        where = TopicPartition(KPI_READINGS, partition)
        consumer.assign([where])
        await consumer.seek_to_beginning(where)
        end: int = (await consumer.end_offsets([where]))[where]
        values: dict[int, str] = {}

        async def read_to_end() -> bool:
            # The position passes transaction markers too, which no record stands for.
            for record in (await consumer.getmany(where, timeout_ms=200)).get(where, []):
                values[record.offset] = record.value.decode()
            position: int = await consumer.position(where)
            return position >= end

        await wait_until(read_to_end, what=f"{KPI_READINGS}-{partition} read ({isolation})")
        return values
    finally:
        await consumer.stop()


def read_partition(kafka: ApacheKafka, partition: int, isolation: Isolation) -> dict[int, str]:
    """Every reading on a partition of ``kpi.readings`` a consumer at ``isolation`` gets, by
    offset."""
    return asyncio.run(_read_partition(kafka.bootstrap_servers, partition, isolation))


def test_java_producer_readings_are_recorded(kafka: ApacheKafka, metrics: ServiceProcess) -> None:
    key = "new_customers_by_java"
    define_kpi(metrics, key)
    readings = [reading(key, n, float(n)) for n in range(5)]

    report = produce_with_java(kafka, [send(one) for one in readings])

    assert len(positions(report)) == len(readings)
    wait_for(lambda: len(recorded(metrics, key)) >= len(readings), what="Java readings recorded")
    assert recorded(metrics, key) == values_by_id(readings)


def test_java_transaction_aborted_readings_are_never_recorded(
    kafka: ApacheKafka, metrics: ServiceProcess
) -> None:
    key = "new_customers_in_transactions"
    define_kpi(metrics, key)
    # As a source retries a failed batch: some aborted readings come again with their right
    # values (the aborted value must not win as the first seen), others never come again.
    aborted = [reading(key, n, 900.0 + n) for n in range(4)]
    committed = [reading(key, n, float(n)) for n in (0, 1, 4, 5)]

    report = produce_with_java(
        kafka,
        ["begin", *map(send, aborted), "abort", "begin", *map(send, committed), "commit"],
        transactional_id=f"okr-tests-{key}",
    )

    assert [line for line in report if not line.startswith("sent")] == ["aborted", "committed"]
    sent = positions(report)
    assert len(sent) == len(aborted) + len(committed)
    aborted_at, committed_at = sent[: len(aborted)], sent[len(aborted) :]
    # One key, one partition: the committed readings lie after the aborted ones, so once they
    # are recorded the service's consumer has passed the aborted ones.
    assert len({partition for partition, _ in sent}) == 1
    assert max(offset for _, offset in aborted_at) < min(offset for _, offset in committed_at)
    partition = sent[0][0]

    # The aborted readings are on the log (a consumer that ignores transactions gets them),
    # and the broker withholds them from consumers that read only committed ones.
    everything = read_partition(kafka, partition, "read_uncommitted")
    assert [everything.get(offset) for _, offset in aborted_at] == [
        json.dumps(one) for one in aborted
    ]
    visible = read_partition(kafka, partition, "read_committed")
    assert not {offset for _, offset in aborted_at} & set(visible)
    assert [visible.get(offset) for _, offset in committed_at] == [
        json.dumps(one) for one in committed
    ]

    last = committed[-1]["reading_id"]
    wait_for(lambda: last in recorded(metrics, key), what="the last committed reading recorded")
    assert recorded(metrics, key) == values_by_id(committed)
