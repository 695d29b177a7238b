"""The goal service as a process against a real broker and a real SQLite store."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import GOAL_EVENTS, METRICS_EVENTS, ObjectiveSet, parse_event
from contracts.envelope import stable_event_id
from services.goal.application import GoalApplication
from services.shared.local_broker import ApacheKafka
from services.shared.store import store_environment
from tests.stores import Store, both_stores
from tests.support import ServiceProcess, metric_value, read_topic, wait_caught_up, wait_for

pytestmark = pytest.mark.integration


def objective_body(title: str = "Become the #1 provider of AI-powered chatbots") -> dict[str, Any]:
    return {
        "title": title,
        "owner": "dana.ceo",
        "org_unit": "company",
        "level": "company",
        "period": "2026-Q4",
        "type": "aspirational",
        "key_results": [
            {
                "title": "Onboard 300 new customers",
                "kind": "kpi",
                "kpi": "new_customers",
                "aggregation": "sum",
                "baseline": 0,
                "target": 300,
            },
            {
                "title": "Reduce churn from 8% to 5%",
                "kind": "metric",
                "baseline": 8,
                "target": 5,
                "unit": "%",
            },
        ],
    }


@pytest.fixture
def goal(kafka: ApacheKafka, data_dir: Path, store: Store) -> Iterator[ServiceProcess]:
    service = ServiceProcess("goal", data_dir, kafka.bootstrap_servers, extra_env=store.env("goal"))
    service.start()
    yield service
    service.stop()


def published(kafka: ApacheKafka, aggregate_ids: set[str]) -> list[dict[str, Any]]:
    """The records of goal.events about the given objectives, in topic order, decoded."""
    found = []
    for record in read_topic(kafka.bootstrap_servers, GOAL_EVENTS):
        event = json.loads(record.value)
        if event["aggregate_id"] in aggregate_ids:
            found.append({"record": record, "event": event})
    return found


def stored_notifications(data_dir: Path, store: Store) -> list[Any]:
    """Every event in the goal service's store, read straight from its SQLite file."""
    application = GoalApplication(env=store_environment(store.settings("goal", data_dir)))
    try:
        return list(application.recorder.select_notifications(1, 1_000_000))
    finally:
        application.close()


def test_created_objective_is_published_with_full_envelope(
    goal: ServiceProcess, kafka: ApacheKafka
) -> None:
    created = httpx.post(
        f"{goal.url}/objectives", json=objective_body(), headers={"X-Actor": "ann"}
    )
    assert created.status_code == 201, created.text
    objective_id = created.json()["objective"]["id"]

    records = wait_for(lambda: published(kafka, {objective_id}), what="ObjectiveSet on the topic")
    record, raw = records[0]["record"], records[0]["event"]
    assert record.key == objective_id.encode()
    assert dict(record.headers)["event_type"] == b"ObjectiveSet"
    assert set(raw) == {
        "event_id",
        "event_type",
        "schema_version",
        "producer",
        "position",
        "epoch",
        "aggregate_id",
        "aggregate_version",
        "occurred_at",
        "actor",
        "causation_id",
        "correlation_id",
        "payload",
    }
    event = parse_event(record.value)
    assert isinstance(event, ObjectiveSet)
    assert event.actor == "ann"
    assert event.position == 1
    assert len(event.epoch) == 12  # the goal process's own (see LogEpochs)
    assert event.event_id == stable_event_id("goal", objective_id, 1)
    assert [kr.title for kr in event.payload.key_results] == [
        "Onboard 300 new customers",
        "Reduce churn from 8% to 5%",
    ]
    assert event.payload.period.start.isoformat() == "2026-10-01"


def test_invalid_objectives_are_refused_naming_field_and_rule(goal: ServiceProcess) -> None:
    body = objective_body()
    body["owner"] = "  "
    body["key_results"][1]["target"] = 8  # equal to its baseline
    answer = httpx.post(f"{goal.url}/objectives", json=body)
    assert answer.status_code == 422
    problems = {(tuple(d["loc"]), d["type"]) for d in answer.json()["detail"]}
    assert problems == {
        (("body", "owner"), "owner_required"),
        (("body", "key_results", 1, "target"), "baseline_equals_target"),
    }
    # Every missing required field is named at once.
    body = {k: v for k, v in objective_body().items() if k not in ("owner", "org_unit", "level")}
    answer = httpx.post(f"{goal.url}/objectives", json=body)
    assert answer.status_code == 422
    assert {(tuple(d["loc"]), d["type"]) for d in answer.json()["detail"]} == {
        (("body", field), "missing") for field in ("owner", "org_unit", "level")
    }
    body = objective_body() | {"parent_id": "00000000-0000-0000-0000-000000000001"}
    answer = httpx.post(f"{goal.url}/objectives", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "parent_not_found"
    missing = httpx.get(f"{goal.url}/objectives/00000000-0000-0000-0000-000000000002")
    assert missing.status_code == 404


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat missing: apt-get install kcat")
def test_kcat_reads_goal_events(goal: ServiceProcess, kafka: ApacheKafka) -> None:
    objective_id = httpx.post(f"{goal.url}/objectives", json=objective_body()).json()["objective"][
        "id"
    ]
    wait_for(lambda: published(kafka, {objective_id}), what="the event on the topic")
    run = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            GOAL_EVENTS,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line.split("\t", 1) for line in run.stdout.splitlines() if "\t" in line]
    ours = [json.loads(value) for key, value in lines if key == objective_id]
    assert [event["event_type"] for event in ours] == ["ObjectiveSet"]


@both_stores
def test_restart_rebuilds_the_same_state(goal: ServiceProcess) -> None:
    company = httpx.post(f"{goal.url}/objectives", json=objective_body()).json()
    child_body = objective_body("Deepen customer relationships") | {
        "parent_id": company["objective"]["id"],
        "level": "team",
        "org_unit": "growth",
    }
    child = httpx.post(f"{goal.url}/objectives", json=child_body).json()
    kr = company["key_results"][1]["id"]
    check_in = httpx.post(
        f"{goal.url}/objectives/{company['objective']['id']}/key-results/{kr}/check-ins",
        json={"value": 7, "confidence": 6, "comment": "first month"},
    )
    assert check_in.status_code == 201, check_in.text
    archived = httpx.post(f"{goal.url}/objectives/{child['objective']['id']}/archive", json={})
    assert archived.status_code == 200

    def snapshot() -> dict[str, Any]:
        listing = httpx.get(f"{goal.url}/objectives").json()
        return {
            "list": sorted(listing, key=lambda o: o["id"]),
            "views": {
                o["id"]: httpx.get(f"{goal.url}/objectives/{o['id']}").json() for o in listing
            },
            "history": {
                o["id"]: httpx.get(f"{goal.url}/objectives/{o['id']}/history").json()
                for o in listing
            },
        }

    before = snapshot()
    goal.kill()
    goal.start()
    assert snapshot() == before
    assert before["views"][company["objective"]["id"]]["key_results"][1]["check_in"]["value"] == 7
    assert [h["event_type"] for h in before["history"][child["objective"]["id"]]] == [
        "ObjectiveSet",
        "ObjectiveArchived",
    ]


@both_stores
def test_sigkill_during_burst_loses_nothing(
    goal: ServiceProcess, kafka: ApacheKafka, data_dir: Path, store: Store
) -> None:
    """Kill the service mid-burst: after restart every stored event is on the topic, in log
    order per partition, none missing, and any duplicate carries the same event_id."""
    accepted: list[str] = []
    stop = threading.Event()

    def burst(worker: int) -> None:
        with httpx.Client(base_url=goal.url, timeout=10) as client:
            for n in range(1000):
                if stop.is_set():
                    return
                try:
                    answer = client.post("/objectives", json=objective_body(f"O {worker}-{n}"))
                except httpx.HTTPError:
                    return  # the service died under us
                if answer.status_code == 201:
                    accepted.append(answer.json()["objective"]["id"])

    writers = [threading.Thread(target=burst, args=(worker,)) for worker in range(4)]
    for writer in writers:
        writer.start()
    wait_for(lambda: len(accepted) >= 60, what="60 accepted writes")
    goal.kill()
    stop.set()
    for writer in writers:
        writer.join()

    goal.start()
    stored = stored_notifications(data_dir, store)
    assert len(stored) >= len(accepted) >= 60
    wait_for(lambda: goal.readiness()["outbox_backlog"] == 0, what="the outbox to drain")

    ids = {str(n.originator_id) for n in stored}
    assert set(accepted) <= ids  # every acknowledged write was stored
    on_topic = published(kafka, ids)
    by_position: dict[int, set[str]] = {}
    first_seen: dict[int, list[int]] = {}
    for item in on_topic:
        event, record = item["event"], item["record"]
        if event["position"] not in by_position:
            first_seen.setdefault(record.partition, []).append(event["position"])
        by_position.setdefault(event["position"], set()).add(event["event_id"])
    assert sorted(by_position) == [n.id for n in stored]  # none missing, none invented
    assert all(len(event_ids) == 1 for event_ids in by_position.values())  # same id if repeated
    for positions in first_seen.values():
        assert positions == sorted(positions)  # log order within each partition


def test_a_kpi_outside_the_catalogue_learnt_from_metrics_events_is_a_warning(
    own_kafka: ApacheKafka, tmp_path: Path
) -> None:
    """The goal service learns the KPI catalogue from the metrics service's KPIDefined events
    (never from its HTTP API), skips the readings among them without storing anything for
    them, and keeps the catalogue across a restart."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "goal").mkdir()
    metrics = ServiceProcess("metrics", tmp_path / "metrics", own_kafka.bootstrap_servers)
    goal = ServiceProcess("goal", tmp_path / "goal", own_kafka.bootstrap_servers)
    metrics.start()
    goal.start()
    try:
        httpx.put(
            f"{metrics.url}/kpis/new_customers",
            json={
                "name": "New customers",
                "direction": "higher_is_better",
                "target": 300,
                "interval": "P1D",
            },
        ).raise_for_status()
        readings = [
            {
                "kpi": "new_customers",
                "value": n % 7,
                "observed_at": f"2026-10-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
                "source": "crm",
                "reading_id": f"crm-{n}",
            }
            for n in range(2000)
        ]
        httpx.post(f"{metrics.url}/readings", json=readings, timeout=60).raise_for_status()
        wait_for(lambda: metrics.readiness()["outbox_backlog"] == 0, what="metrics published")
        wait_caught_up(own_kafka.bootstrap_servers, "okr-goal", [METRICS_EVENTS])

        def consumed(outcome: str) -> float:
            return metric_value(
                goal.url, "okr_consumer_messages_total", topic=METRICS_EVENTS, outcome=outcome
            )

        assert (consumed("applied"), consumed("skipped")) == (1, 2000)
        assert goal.readiness()["log_position"] == 1  # the KPI noted; the readings: nothing

        body = objective_body()
        body["key_results"].append(
            {"title": "Close deals", "kind": "kpi", "kpi": "typo_kpi", "baseline": 0, "target": 9}
        )
        typo = "key result 3 ('Close deals'): KPI typo_kpi is not in the KPI catalogue"
        created = httpx.post(f"{goal.url}/objectives", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["warnings"] == [typo]

        objective = created.json()["objective"]
        body["key_results"] = [
            {k: v for k, v in kr.items() if v is not None} for kr in objective["key_results"]
        ]
        body["key_results"][2]["kpi"] = "new_customers"
        fixed = httpx.put(f"{goal.url}/objectives/{objective['id']}", json=body)
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["warnings"] == []

        goal.kill()
        goal.start()
        body = objective_body()
        body["key_results"].append(
            {"title": "Close deals", "kind": "kpi", "kpi": "typo_kpi", "baseline": 0, "target": 9}
        )
        again = httpx.post(f"{goal.url}/objectives", json=body)
        assert again.json()["warnings"] == [typo]
    finally:
        goal.stop()
        metrics.stop()
