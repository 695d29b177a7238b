"""What the local brokers need, said in one line when this machine lacks it."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from services.shared.local_broker import (
    ApacheKafka,
    BrokerUnavailable,
    cluster_id,
    free_port,
    kafka_jars,
    kafka_version,
)


def test_without_java_and_maven_the_line_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OKR_KAFKA_CACHE", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(BrokerUnavailable) as refused:
        kafka_jars()
    assert str(refused.value) == (
        "Apache Kafka needs Java 17+ (apt-get install openjdk-17-jre-headless) "
        "and Maven (apt-get install maven)"
    )


def test_cached_jars_need_java_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OKR_KAFKA_CACHE", str(tmp_path))
    (tmp_path / f"kafka-{kafka_version()}" / "lib").mkdir(parents=True)
    monkeypatch.setattr(shutil, "which", lambda program: program == "java" or None)
    assert kafka_jars() == tmp_path / f"kafka-{kafka_version()}" / "lib"
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(BrokerUnavailable, match="Java 17"):
        kafka_jars()


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    # 0xf8 encodes to '-' as the first URL-safe base64 character: the storage
    # tool would read such an id as an option and refuse to format.
    draws = iter([b"\xf8" + bytes(15), b"\x00" * 16])
    assert cluster_id(lambda: next(draws)) == "AAAAAAAAAAAAAAAAAAAAAA"


def test_a_port_is_handed_out_once_even_when_the_kernel_offers_it_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The kernel may offer a probed port again before its server binds it: the broker's
    # and the controller's listeners then clashed, and the storage tool refused to format.
    first = free_port()
    other = first + 1 if first < 65535 else first - 1
    offers = iter([first, other])

    class Probe:
        def __enter__(self) -> Probe:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: Any) -> None:
            self.port = next(offers)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(socket, "socket", Probe)
    broker = ApacheKafka(tmp_path, port=first)
    assert broker.controller_port == other
