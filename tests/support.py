"""Helpers for tests that drive real processes: free ports, waiting on conditions with a
deadline (never a bare sleep), service processes, and reading whole topics."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from contracts import Envelope, parse_event
from services.shared import broker
from services.shared.integration_events import Publication
from services.shared.local_broker import ApacheKafka, BrokerUnavailable, free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def unavailable(message: str) -> NoReturn:
    """A test cannot run here for want of ``message``: skipped with that one line, except
    under ``CI=true``, where everything CI can run must run, so it fails."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def apache_kafka(data_dir: Path) -> ApacheKafka:
    """A started Apache Kafka broker for a test, with its topics (its jars fetched on first
    use); without Java or Maven, the test is ``unavailable``."""
    kafka = ApacheKafka(data_dir, port=free_port())
    try:
        kafka.start()
    except BrokerUnavailable as missing:
        unavailable(str(missing))
    asyncio.run(broker.ensure_topics({"bootstrap_servers": kafka.bootstrap_servers}))
    return kafka


def wait_for(
    condition: Callable[[], T],
    within: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` every ``interval`` seconds until it returns something truthy; fail
    after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(interval)


#: Every service process the tests started, so that one left running is found and stopped.
STARTED: list[subprocess.Popen[bytes]] = []


@dataclass
class ServiceProcess:
    """One service (``python -m services.<name>``) as its own process, as in production."""

    name: str
    data_dir: Path
    bootstrap: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: More environment for the process (kept across restarts).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The checkout whose code runs (another one's, to compare two versions in one run).
    root: Path = ROOT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def start(
        self, timeout: float = 60.0, extra_env: dict[str, str] | None = None
    ) -> ServiceProcess:
        if extra_env is not None:
            self.extra_env = extra_env
        env = (
            os.environ
            # Services refuse to start without tokens; tests of authentication give some.
            # A relay that lost its lease looks for it again sooner than in production.
            | {"OKR_AUTH_DISABLED": "true", "OKR_OUTBOX_POLL_SECONDS": "0.2"}
            | self.extra_env
            | {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "OKR_DATA_DIR": str(self.data_dir),
                "OKR_HTTP_PORT": str(self.port),
            }
        )
        log = (self.data_dir.parent / f"{self.name}-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        STARTED.append(self.process)
        wait_for(self.ready, timeout, f"{self.name} to be ready")
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def readiness(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{self.url}/readyz", timeout=5).json()
        return answer

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def stop_leftovers() -> list[str]:
    """Kill the service processes still running; returns what they were."""
    leftovers = [process for process in STARTED if process.poll() is None]
    for process in leftovers:
        process.kill()
        process.wait()
    STARTED.clear()
    return [f"{process.args!r} (pid {process.pid})" for process in leftovers]


def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` up to its current end, partition by partition, in order."""
    return asyncio.run(broker.read_topic({"bootstrap_servers": bootstrap}, topic))


async def wait_until(
    condition: Callable[[], Awaitable[T]], within: float = 30.0, what: str = "condition"
) -> T:
    """``wait_for`` for coroutines: poll until truthy, fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def group_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """Whether consumer ``group`` has committed offsets up to the end of every partition
    (asked with a consumer of the group that never joins it)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await broker.topic_partitions(consumer, topic)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if ends[tp] > 0 and (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


def wait_caught_up(
    bootstrap: str, group: str, topics: Sequence[str], within: float = 120.0
) -> None:
    """Wait until consumer ``group`` has committed every partition of ``topics`` to its end."""
    for topic in topics:
        wait_for(
            functools.partial(_caught_up, bootstrap, group, topic),
            within=within,
            what=f"group {group} to consume {topic}",
        )


def _caught_up(bootstrap: str, group: str, topic: str) -> bool:
    return asyncio.run(group_caught_up(bootstrap, group, topic))


#: Samples of a ``/metrics`` page by (name, sorted labels).
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(service_url: str) -> Scrape:
    """Every sample a service's ``/metrics`` shows now."""
    text = httpx.get(f"{service_url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric_value(service_url: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` on a service's ``/metrics`` that carry ``labels``."""
    return sum(
        value
        for (sample_name, sample_labels), value in scrape(service_url).items()
        if sample_name == name and labels.items() <= dict(sample_labels).items()
    )


def sent_envelope(publication: Publication | None) -> Envelope:
    """The contract model of what a relay sends for ``publication``, checked to be the very
    bytes and key it sends."""
    assert publication is not None
    envelope = publication.envelope()
    assert publication.value == envelope.to_json()
    assert parse_event(publication.value, envelope.event_type) == envelope
    assert publication.key == envelope.key()
    assert publication.event_class is type(envelope)
    return envelope
