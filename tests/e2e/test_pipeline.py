"""End to end on a real broker with all three services as processes: readings streamed into
``kpi.readings`` score the seed example's key results, gaps open and close, and a rebuilt
alignment service reaches the same tree."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from contracts import ALIGNMENT_EVENTS, GOAL_EVENTS, KPI_READINGS, METRICS_EVENTS
from services.alignment.api import build_tree
from services.alignment.rebuild import rebuild_from_topics
from services.cli import app as okr
from tests.stores import Store, both_stores
from tests.support import (
    ServiceProcess,
    apache_kafka,
    read_topic,
    wait_caught_up,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("stack")
    broker = apache_kafka(root / "kafka")
    services = {}
    for name in ("goal", "metrics", "alignment"):
        (root / name).mkdir()
        services[name] = ServiceProcess(name, root / name, broker.bootstrap_servers).start()
    yield {"broker": broker, "root": root, **services}
    for service in services.values():
        service.stop()
    broker.stop()


async def _produce(bootstrap: str, readings: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for reading in readings:
            await producer.send_and_wait(
                KPI_READINGS, json.dumps(reading).encode(), key=reading["kpi"].encode()
            )
    finally:
        await producer.stop()


def produce(stack: dict[str, Any], readings: list[dict[str, Any]]) -> None:
    asyncio.run(_produce(stack["broker"].bootstrap_servers, readings))


def reading(kpi: str, value: float, observed_at: str, n: int) -> dict[str, Any]:
    return {
        "kpi": kpi,
        "value": value,
        "observed_at": observed_at,
        "source": "crm",
        "reading_id": f"{kpi}-{n}",
    }


def define_kpi(stack: dict[str, Any], key: str, **definition: Any) -> None:
    httpx.put(f"{stack['metrics'].url}/kpis/{key}", json=definition).raise_for_status()


def score(stack: dict[str, Any], objective_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{stack['alignment'].url}/objectives/{objective_id}/score")
    return answer.json() if answer.status_code == 200 else {}


def open_gaps(stack: dict[str, Any]) -> set[str]:
    return {g["gap_id"] for g in httpx.get(f"{stack['alignment'].url}/gaps").json()}


def test_seed_example_scores_as_readings_stream_in(stack: dict[str, Any]) -> None:
    define_kpi(
        stack,
        "arr",
        name="Annual recurring revenue",
        unit="USD",
        direction="higher_is_better",
        target=10_000_000,
        warning=6_000_000,
        interval="P30D",
    )
    define_kpi(
        stack,
        "new_customers",
        name="New customers",
        direction="higher_is_better",
        target=2,
        interval="P1D",
    )
    objective = httpx.post(
        f"{stack['goal'].url}/objectives",
        json={
            "title": "Become the #1 provider of AI-powered chatbots",
            "owner": "dana.ceo",
            "org_unit": "company",
            "level": "company",
            "period": "2026",
            "type": "aspirational",
            "key_results": [
                {
                    "title": "Achieve $10M in annual recurring revenue",
                    "kind": "kpi",
                    "kpi": "arr",
                    "aggregation": "latest",
                    "baseline": 0,
                    "target": 10_000_000,
                    "unit": "USD",
                },
                {
                    "title": "Onboard 300 new customers",
                    "kind": "kpi",
                    "kpi": "new_customers",
                    "aggregation": "sum",
                    "baseline": 0,
                    "target": 300,
                },
            ],
        },
    ).json()
    objective_id = objective["objective"]["id"]
    arr_kr, customers_kr = (kr["id"] for kr in objective["key_results"])

    produce(
        stack,
        [
            reading("arr", 2_000_000, "2026-01-31T00:00:00Z", 1),
            reading("arr", 5_000_000, "2026-06-30T00:00:00Z", 2),
            reading("arr", 1_000_000, "2026-03-31T00:00:00Z", 3),  # late: observed earlier
            reading("arr", 9_000_000, "2025-12-31T00:00:00Z", 4),  # outside the period
            *[
                reading("new_customers", 3, f"2026-{month:02d}-15T00:00:00Z", month)
                for month in range(1, 13)
                for _ in range(1)
            ],
            *[
                reading("new_customers", 1, f"2026-05-{day:02d}T00:00:00Z", 100 + day)
                for day in range(1, 31)
            ],
            *[
                reading("new_customers", 1, f"2026-07-{day:02d}T00:00:00Z", 200 + day)
                for day in range(1, 31)
            ],
            *[
                reading("new_customers", 2, f"2026-09-{day:02d}T00:00:00Z", 300 + day)
                for day in range(1, 16)
            ],
        ],
    )  # new customers: 36 + 30 + 30 + 30 = 126

    def scored() -> dict[str, Any]:
        found = score(stack, objective_id)
        values = {kr["id"]: kr["value"] for kr in found.get("key_results", [])}
        return found if values == {arr_kr: 5_000_000, customers_kr: 126} else {}

    result = wait_for(scored, within=60, what="the seed example scored")
    by_id = {kr["id"]: kr for kr in result["key_results"]}
    assert by_id[arr_kr]["score"] == 0.5
    assert by_id[customers_kr]["score"] == pytest.approx(0.42)
    assert result["score"] == pytest.approx((0.5 + 0.42) / 2)
    history = httpx.get(f"{stack['alignment'].url}/key-results/{arr_kr}/scores").json()
    # latest: the lineage is the one reading that determines the value, with its position.
    assert [item["reading_id"] for item in history[-1]["lineage"]] == ["arr-2"]
    assert history[-1]["lineage"][0]["position"] >= 1
    assert history[-1]["lineage"][0]["source"] == "crm"
    goal_event = history[-1]["definition"]
    goal_events = [
        json.loads(r.value) for r in read_topic(stack["broker"].bootstrap_servers, GOAL_EVENTS)
    ]
    definition = next(e for e in goal_events if e["position"] == goal_event["position"])
    assert definition["event_type"] == "ObjectiveSet"
    assert definition["payload"]["id"] == objective_id  # the definition version it used
    cited = {item["reading_id"] for entry in history for item in entry["lineage"]}
    assert "arr-4" not in cited  # outside the period: never counted
    sums = httpx.get(f"{stack['alignment'].url}/key-results/{customers_kr}/scores").json()
    summed = {item["reading_id"] for entry in sums for item in entry["lineage"]}
    assert len(summed) == 87  # every reading that the sum counted is cited once

    # The goal service shows the latest scores it read from alignment.events.
    def shown() -> dict[str, Any]:
        view = httpx.get(f"{stack['goal'].url}/objectives/{objective_id}").json()
        score = view.get("score") or {}
        return view if score.get("score") == pytest.approx(result["score"]) else {}

    goal_view = wait_for(shown, within=60, what="the goal service to show the score")
    assert [kr["score"]["score"] for kr in goal_view["key_results"]] == [0.5, pytest.approx(0.42)]

    published = [
        json.loads(r.value) for r in read_topic(stack["broker"].bootstrap_servers, ALIGNMENT_EVENTS)
    ]
    ours = [
        e
        for e in published
        if e["event_type"] == "KeyResultScored" and e["payload"]["key_result_id"] == arr_kr
    ]
    assert ours[-1]["payload"]["score"] == 0.5
    assert ours[-1]["payload"]["status"] in {"on_track", "at_risk", "off_track"}


def test_write_answers_carry_the_latest_score_and_a_read_objective_writes_back(
    stack: dict[str, Any],
) -> None:
    goal = stack["goal"].url
    created = httpx.post(
        f"{goal}/objectives",
        json={
            "title": "Ship the mobile app",
            "owner": "ana",
            "org_unit": "product",
            "level": "team",
            "period": "2026-Q4",
            "key_results": [
                {"title": "Reach 40 beta users", "kind": "metric", "baseline": 0, "target": 40}
            ],
        },
    ).json()
    objective_id = created["objective"]["id"]
    key_result_id = created["key_results"][0]["id"]
    check_ins = f"{goal}/objectives/{objective_id}/key-results/{key_result_id}/check-ins"
    httpx.post(check_ins, json={"value": 10}).raise_for_status()
    wait_for(
        lambda: (
            (httpx.get(f"{goal}/objectives/{objective_id}").json()["score"] or {}).get("score")
            == 0.25
        ),
        within=60,
        what="the goal service to show the first score",
    )

    # Read, change a field, write back: what GET returns is what PUT takes.
    read = httpx.get(f"{goal}/objectives/{objective_id}").json()["objective"]
    rewritten = httpx.put(f"{goal}/objectives/{objective_id}", json=read | {"title": "Ship it"})
    assert rewritten.status_code == 200, rewritten.text
    assert rewritten.json()["objective"]["title"] == "Ship it"
    assert rewritten.json()["objective"]["period"] == read["period"]
    assert rewritten.json()["score"]["score"] == 0.25, "the latest known score, never a reset"

    # A check-in answers with the latest known score, until the new one is published.
    checked_in = httpx.post(check_ins, json={"value": 20}).json()
    assert checked_in["score"] is not None
    assert checked_in["key_results"][0]["score"] is not None

    # Read-only fields may come back unchanged, never changed.
    for field, value in (("id", str(uuid.uuid4())), ("status", "archived")):
        refused = httpx.put(f"{goal}/objectives/{objective_id}", json=read | {field: value})
        assert refused.status_code == 422
        assert [(d["loc"], d["type"]) for d in refused.json()["detail"]] == [
            (["body", field], "read_only")
        ]
    mislabelled = read | {"period": read["period"] | {"label": "2026-Q3"}}
    refused = httpx.put(f"{goal}/objectives/{objective_id}", json=mislabelled)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "period", "label"]


def test_unhealthy_kpi_opens_a_gap_until_a_key_result_moves_it(stack: dict[str, Any]) -> None:
    define_kpi(
        stack,
        "employee_turnover_rate",
        name="Employee turnover rate",
        unit="%",
        direction="lower_is_better",
        target=10,
        warning=15,
        interval="P30D",
    )
    produce(stack, [reading("employee_turnover_rate", 18, "2026-11-01T00:00:00Z", 1)])
    gap = "kpi_unaddressed:employee_turnover_rate"
    wait_for(lambda: gap in open_gaps(stack), within=60, what="the kpi_unaddressed gap")

    httpx.post(
        f"{stack['goal'].url}/objectives",
        json={
            "title": "Keep our people",
            "owner": "pat.hr",
            "org_unit": "hr",
            "level": "company",
            "period": "2026-Q4",
            "key_results": [
                {
                    "title": "Turnover down to 10%",
                    "kind": "kpi",
                    "kpi": "employee_turnover_rate",
                    "baseline": 18,
                    "target": 10,
                }
            ],
        },
    ).raise_for_status()
    wait_for(lambda: gap not in open_gaps(stack), within=60, what="the gap resolved")
    resolved = [
        json.loads(r.value) for r in read_topic(stack["broker"].bootstrap_servers, ALIGNMENT_EVENTS)
    ]
    assert any(e["event_type"] == "GapResolved" and e["payload"]["gap_id"] == gap for e in resolved)


def comparable(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tree without the instants of evaluation, which differ between two instances."""

    def strip(node: dict[str, Any]) -> dict[str, Any]:
        return {
            **{
                k: v
                for k, v in node.items()
                if k not in ("as_of", "expected", "children", "key_results")
            },
            "key_results": [
                {k: v for k, v in kr.items() if k not in ("as_of", "expected")}
                for kr in node["key_results"]
            ],
            "children": [strip(child) for child in node.get("children", [])],
        }

    return [strip(node) for node in tree]


def test_sigkill_mid_stream_counts_every_reading_once(stack: dict[str, Any]) -> None:
    define_kpi(
        stack,
        "onboardings",
        name="Onboardings",
        direction="higher_is_better",
        target=100,
        interval="P1D",
    )
    objective = httpx.post(
        f"{stack['goal'].url}/objectives",
        json={
            "title": "Onboard customers",
            "owner": "sales",
            "org_unit": "sales",
            "level": "company",
            "period": "2026",
            "key_results": [
                {
                    "title": "Count onboardings",
                    "kind": "kpi",
                    "kpi": "onboardings",
                    "aggregation": "count",
                    "baseline": 0,
                    "target": 5000,
                }
            ],
        },
    ).json()
    objective_id = objective["objective"]["id"]
    readings = [
        reading("onboardings", 1, f"2026-10-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z", n)
        for n in range(3000)
    ]
    produce(stack, readings)
    alignment: ServiceProcess = stack["alignment"]
    alignment.kill()
    alignment.start()
    bootstrap = stack["broker"].bootstrap_servers
    wait_caught_up(bootstrap, "okr-alignment", [GOAL_EVENTS, METRICS_EVENTS], within=120)

    def counted() -> float | None:
        found = score(stack, objective_id)
        return found["key_results"][0]["value"] if found else None

    wait_for(lambda: counted() == 3000, within=60, what="every reading counted once")


@both_stores
def test_rebuild_from_empty_store_reaches_the_live_tree(
    stack: dict[str, Any], store: Store
) -> None:
    """A second alignment instance on an empty store (SQLite, and PostgreSQL) consumes the
    topics from offset 0 and reaches the live instance's tree and gaps."""
    bootstrap = stack["broker"].bootstrap_servers
    wait_caught_up(bootstrap, "okr-alignment", [GOAL_EVENTS, METRICS_EVENTS], within=120)
    live = comparable(httpx.get(f"{stack['alignment'].url}/tree").json())
    assert live, "the stack holds objectives to rebuild"
    rebuilt_dir: Path = stack["root"] / f"rebuilt-{store.kind}"
    rebuilt_dir.mkdir()
    group = f"okr-alignment-rebuild-{store.kind}"
    rebuilt = ServiceProcess("alignment", rebuilt_dir, bootstrap)
    rebuilt.start(
        extra_env=store.env("alignment")
        | {"OKR_KAFKA_CONSUMER_GROUP": group, "OKR_INSTANCE_ID": f"rebuild-{store.kind}"}
    )
    try:
        wait_caught_up(bootstrap, group, [GOAL_EVENTS, METRICS_EVENTS], within=180)
        wait_for(
            lambda: comparable(httpx.get(f"{rebuilt.url}/tree").json()) == live,
            within=30,
            what="the rebuilt tree to equal the live one",
        )
        assert open_gaps(stack) == {g["gap_id"] for g in httpx.get(f"{rebuilt.url}/gaps").json()}
    finally:
        rebuilt.stop()


def test_as_of_shows_targets_and_scores_as_they_were(stack: dict[str, Any]) -> None:
    define_kpi(
        stack,
        "audited",
        name="Audited KPI",
        direction="higher_is_better",
        target=100,
        interval="P1D",
    )
    body: dict[str, Any] = {
        "title": "Audit me",
        "owner": "auditor",
        "org_unit": "audit",
        "level": "company",
        "period": "2026",
        "key_results": [
            {
                "title": "Reach the target",
                "kind": "kpi",
                "kpi": "audited",
                "aggregation": "latest",
                "baseline": 0,
                "target": 100,
            }
        ],
    }
    created = httpx.post(f"{stack['goal'].url}/objectives", json=body).json()
    objective_id = created["objective"]["id"]
    kr_id = created["key_results"][0]["id"]

    def kr_score() -> float | None:
        found = score(stack, objective_id)
        return found["key_results"][0]["score"] if found else None

    produce(stack, [reading("audited", 50, "2026-06-01T00:00:00Z", 1)])
    wait_for(lambda: kr_score() == 0.5, within=60, what="the first score")
    # The services run on this host: its clock is theirs. The redefinition comes later.
    instant = datetime.now(UTC)
    instant_text = instant.isoformat()
    wait_for(
        lambda: datetime.now(UTC) > instant + timedelta(milliseconds=200),
        within=5,
        what="the clock to pass the instant",
    )

    redefined = {**body, "key_results": [{**body["key_results"][0], "id": kr_id, "target": 200}]}
    httpx.put(f"{stack['goal'].url}/objectives/{objective_id}", json=redefined).raise_for_status()
    wait_for(lambda: kr_score() == 0.25, within=60, what="the score under the new target")
    produce(stack, [reading("audited", 100, "2026-07-01T00:00:00Z", 2)])
    wait_for(lambda: kr_score() == 0.5, within=60, what="the score after the new reading")

    then = httpx.get(
        f"{stack['alignment'].url}/objectives/{objective_id}/score", params={"as_of": instant_text}
    ).json()
    assert (then["key_results"][0]["target"], then["key_results"][0]["score"]) == (100.0, 0.5)
    assert then["key_results"][0]["value"] == 50
    tree_then = httpx.get(f"{stack['alignment'].url}/tree", params={"as_of": instant_text}).json()
    audited = [n for n in tree_then if n["id"] == objective_id]
    assert audited[0]["key_results"][0]["target"] == 100.0
    now = score(stack, objective_id)
    assert (now["key_results"][0]["target"], now["key_results"][0]["value"]) == (200.0, 100)

    goal_then = httpx.get(
        f"{stack['goal'].url}/objectives/{objective_id}", params={"as_of": instant_text}
    ).json()
    assert goal_then["key_results"][0]["target"] == 100.0
    kpi_then = httpx.get(
        f"{stack['metrics'].url}/kpis/audited", params={"as_of": instant_text}
    ).json()
    assert kpi_then["value"] == 50

    history = httpx.get(f"{stack['goal'].url}/objectives/{objective_id}/history").json()
    changed = [
        c
        for entry in history
        for c in entry["changes"]
        if c["field"] == f"key_results[{kr_id}].target"
    ]
    assert changed[-1] == {"field": f"key_results[{kr_id}].target", "before": 100.0, "after": 200.0}
    assert (
        httpx.get(
            f"{stack['goal'].url}/objectives/{objective_id}",
            params={"as_of": "2001-01-01T00:00:00Z"},
        ).status_code
        == 404
    )


def test_offline_replay_from_the_topics_gives_the_services_tree(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """No service involved: the alignment rules run over the topics, with the clock at T."""
    instant = datetime.now(UTC)
    live = httpx.get(f"{stack['alignment'].url}/tree", params={"as_of": instant.isoformat()})
    application = asyncio.run(
        rebuild_from_topics(
            {"bootstrap_servers": stack["broker"].bootstrap_servers}, instant, tmp_path
        )
    )
    try:
        offline = [
            node.model_dump(mode="json") for node in build_tree(application.tracks(), None, None)
        ]
    finally:
        application.close()

    def scores_only(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Pace is judged at the instant of each evaluation (the service's then, the replay's
        T), so compare definitions, values and scores."""

        def strip(node: dict[str, Any]) -> dict[str, Any]:
            return {
                **{k: v for k, v in node.items() if k not in ("pace", "children", "key_results")},
                "key_results": [
                    {k: v for k, v in kr.items() if k != "status"} for kr in node["key_results"]
                ],
                "children": [strip(child) for child in node["children"]],
            }

        return [strip(node) for node in comparable(tree)]

    assert offline, "the replay found no objectives"
    assert scores_only(offline) == scores_only(live.json())


def test_okr_replay_from_kafka_needs_no_service(stack: dict[str, Any]) -> None:
    moment = datetime.now(UTC).isoformat()
    result = CliRunner().invoke(
        okr,
        [
            "--json",
            "replay",
            "--as-of",
            moment,
            "--from-kafka",
            stack["broker"].bootstrap_servers,
        ],
    )
    assert result.exit_code == 0, result.output
    titles = {node["title"] for node in json.loads(result.output)}
    assert "Become the #1 provider of AI-powered chatbots" in titles
