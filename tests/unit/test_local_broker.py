"""What the local brokers need, said in one line when this machine lacks it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.shared.local_broker import BrokerUnavailable, cluster_id, kafka_jars, kafka_version


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
