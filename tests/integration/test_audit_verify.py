"""GET /audit/verify on a running service: the hash chain and the head it published."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.shared.local_broker import ApacheKafka
from tests.integration.test_goal_service import objective_body
from tests.support import ServiceProcess, wait_for

pytestmark = pytest.mark.integration


def verified(service: ServiceProcess) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{service.url}/audit/verify", timeout=30).json()
    return answer


def test_verify_sees_the_published_head_and_a_truncated_log(
    kafka: ApacheKafka, data_dir: Path
) -> None:
    goal = ServiceProcess("goal", data_dir, kafka.bootstrap_servers).start()
    try:
        for n in range(3):
            httpx.post(f"{goal.url}/objectives", json=objective_body(f"O{n}")).raise_for_status()
        report = wait_for(
            lambda: (
                (found := verified(goal))["published_head"]
                and found["published_head"]["position"] == 3
                and found
            ),
            what="the chain head published",
        )
        assert (report["ok"], report["checked"], report["head_position"]) == (True, 3, 3)
        assert report["published_head"]["hash"] == report["head_hash"]
    finally:
        goal.stop()

    with sqlite3.connect(data_dir / "goal.sqlite") as connection:  # remove the last event
        connection.execute("DELETE FROM stored_events WHERE rowid = 3")
        connection.execute("DELETE FROM audit_chain WHERE position = 3")
    goal.start()
    try:
        report = verified(goal)
        assert (report["ok"], report["broken_at"]) == (False, 3)
        assert "removed from its end" in report["reason"]
    finally:
        goal.stop()


def test_verify_without_kafka_answers_503_not_half_a_verdict(
    own_kafka: ApacheKafka, data_dir: Path
) -> None:
    goal = ServiceProcess("goal", data_dir, own_kafka.bootstrap_servers).start()
    try:
        own_kafka.stop()
        answer = httpx.get(f"{goal.url}/audit/verify", timeout=60)
        assert answer.status_code == 503
        assert "audit.heads" in answer.json()["detail"]
    finally:
        goal.stop()
