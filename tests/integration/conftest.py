"""Integration tests talk to a real Kafka-compatible broker over TCP (noida-db, one per test
module so that producer positions of different stores never meet) and real SQLite files."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.shared.broker import EmbeddedBroker, ensure_topics
from tests.support import free_port


def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka"), port=free_port())
    broker.start()
    asyncio.run(ensure_topics({"bootstrap_servers": broker.bootstrap_servers}))
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker per module: tests in one module may share topics."""
    yield from embedded_broker(tmp_path_factory)


@pytest.fixture
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker for one test, for tests that count everything on a topic."""
    yield from embedded_broker(tmp_path_factory)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
