"""Producers compress as configured (``OKR_KAFKA_COMPRESSION``, zstd by default)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.shared import outbox
from services.shared.outbox import OutboxRelay
from services.shared.settings import Settings
from services.shared.store import ServiceApplication, store_environment


def test_zstd_by_default_and_none_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OKR_KAFKA_COMPRESSION", raising=False)
    assert Settings().kafka_compression_type() == "zstd"
    monkeypatch.setenv("OKR_KAFKA_COMPRESSION", "none")
    assert Settings().kafka_compression_type() is None


def test_an_unknown_codec_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKR_KAFKA_COMPRESSION", "brotli")
    with pytest.raises(ValidationError, match="kafka_compression"):
        Settings()


class Refused(Exception):
    pass


def test_the_relay_producer_compresses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class Producer:
        def __init__(self, **options: Any) -> None:
            made.append(options)

        async def start(self) -> None:
            raise Refused  # enough: the producer was made

    monkeypatch.setattr(outbox, "AIOKafkaProducer", Producer)
    application = ServiceApplication(env=store_environment(Settings(data_dir=tmp_path)))
    relay = OutboxRelay(application, "goal.events", lambda event, *_: None, {}, compression="zstd")

    async def first_batch() -> None:
        async for _ in relay._publish_while_leading(lease=None):  # type: ignore[arg-type]
            break

    with pytest.raises(Refused):
        asyncio.run(first_batch())
    assert made[0]["compression_type"] == "zstd"
