"""Integration tests talk to a real Kafka-compatible broker over TCP (noida-db, one per test
module so that producer positions of different stores never meet) and real SQLite files."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.shared.broker import EmbeddedBroker, ensure_topics
from tests.support import free_port


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka"), port=free_port())
    broker.start()
    asyncio.run(ensure_topics({"bootstrap_servers": broker.bootstrap_servers}))
    yield broker
    broker.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
