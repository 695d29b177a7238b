"""Integration tests talk over TCP to a real Apache Kafka broker, started by the suite from
its Maven Central jars, and to real stores (SQLite files; PostgreSQL started by the suite).

A broker serves one test module: the topics' names are fixed, and the events of the stores
of different modules (whose positions overlap) must never meet on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.shared.local_broker import ApacheKafka
from tests.support import apache_kafka


def kafka_for_test(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    kafka = apache_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """A broker per module: tests in one module may share topics."""
    yield from kafka_for_test(tmp_path_factory)


@pytest.fixture
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """A broker for one test, for tests that count everything on a topic or stop the broker."""
    yield from kafka_for_test(tmp_path_factory)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
