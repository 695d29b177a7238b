"""Scale-out of ingestion: two metrics-service instances in one consumer group, on one
PostgreSQL store, split the partitions of ``kpi.readings``. Killing one mid-stream (the one
relaying the outbox) loses nothing and records nothing twice: the survivor takes over its
partitions, once the broker has expired the dead member's session, and the outbox.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from services.shared.local_broker import ApacheKafka
from tests.integration.test_metrics_service import (
    KPIS,
    produce,
    readings_count,
    recorded_on_topic,
    valid_readings,
)
from tests.stores import Store
from tests.support import ServiceProcess, metric_value, wait_caught_up, wait_for

pytestmark = pytest.mark.integration


def recorded(service: ServiceProcess) -> float:
    return metric_value(service.url, "okr_readings_total", outcome="recorded")


def relaying(service: ServiceProcess) -> bool:
    return metric_value(service.url, "okr_outbox_active") == 1


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_two_instances_split_the_readings_and_survive_a_kill(
    own_kafka: ApacheKafka, tmp_path: Path, store: Store
) -> None:
    bootstrap = own_kafka.bootstrap_servers
    instances = [
        ServiceProcess(
            "metrics",
            tmp_path / name,
            bootstrap,
            # One store for both; each its own static group member.
            extra_env=store.env("metrics") | {"OKR_INSTANCE_ID": name},
        )
        for name in ("metrics-a", "metrics-b")
    ]
    try:
        for instance in instances:
            instance.data_dir.mkdir()
            instance.start()
        first, second = instances
        for key, definition in KPIS.items():  # defined through one, known to both
            httpx.put(f"{first.url}/kpis/{key}", json=definition).raise_for_status()
        assert httpx.get(f"{second.url}/kpis/new_customers").status_code == 200

        valid = valid_readings(20_000, seed=5)
        produce(own_kafka, [json.dumps(r).encode() for r in valid])
        wait_for(
            lambda: all(recorded(instance) > 0 for instance in instances),
            within=60,
            what="both instances ingesting their share",
        )
        leader = wait_for(
            lambda: next((i for i in instances if relaying(i)), None),
            what="one instance relaying the outbox",
        )
        assert leader is not None
        standby = second if leader is first else first
        assert not relaying(standby)

        leader.kill()
        wait_for(lambda: relaying(standby), within=30, what="the standby to take the outbox")
        wait_caught_up(bootstrap, "okr-metrics", ["kpi.readings"], within=120)

        assert readings_count(standby) == 20_000
        wait_for(
            lambda: len(recorded_on_topic(own_kafka)) >= 20_000,
            within=120,
            what="every reading published",
        )
        assert set(recorded_on_topic(own_kafka)) == {r["reading_id"] for r in valid}
    finally:
        for instance in instances:
            instance.stop()
