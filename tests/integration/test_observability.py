"""Observability against the running services: every /metrics passes ``promtool check
metrics``, and a real Prometheus (Debian's) scraping them evaluates every dashboard query with
data and every recording and alert rule without error."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from contracts import KPI_READINGS
from services import demo
from services.shared.local_broker import ApacheKafka, free_port
from tests.support import ROOT, ServiceProcess, wait_for

pytestmark = pytest.mark.integration

RULES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))


@pytest.fixture(scope="module")
def services(
    kafka: ApacheKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    root = tmp_path_factory.mktemp("observed")
    running = {}
    for name in ("goal", "metrics", "alignment"):
        (root / name).mkdir()
        running[name] = ServiceProcess(name, root / name, kafka.bootstrap_servers).start()
    demo.load_kpis(running["metrics"].url)
    demo.load_objectives(running["goal"].url)
    asyncio.run(_produce_poison(kafka.bootstrap_servers))  # so the DLQ panels have data
    wait_for(
        lambda: httpx.get(f"{running['alignment'].url}/tree").json(),
        within=60,
        what="the demo scored",
    )
    yield running
    for service in running.values():
        service.stop()


async def _produce_poison(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(KPI_READINGS, b"not a reading")
    finally:
        await producer.stop()


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool missing: apt-get install prometheus (make test does it)",
)
def test_every_metrics_endpoint_passes_promtool(services: dict[str, ServiceProcess]) -> None:
    for name, service in services.items():
        exposition = httpx.get(f"{service.url}/metrics").text
        check = subprocess.run(
            ["promtool", "check", "metrics"],
            input=exposition,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"
        assert "okr_events_appended_total" in exposition


def dashboard_queries() -> list[tuple[str, str, str]]:
    spec = importlib.util.spec_from_file_location(
        "okr_dashboards", ROOT / "deploy/grafana/dashboards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    queries: list[tuple[str, str, str]] = module.dashboard_queries()
    return queries


def rule_expressions() -> list[tuple[str, str]]:
    found = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((rule.get("record") or rule["alert"], rule["expr"]))
    return found


@pytest.fixture(scope="module")
def prometheus(
    services: dict[str, ServiceProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus missing: apt-get install prometheus (make test does it)")
    root = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULES],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [service.url.split("//")[1]]}]}
            for name, service in services.items()
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{address}"
    try:
        wait_for(
            lambda: _value(url, "count(up == 1)") == 3.0,
            within=60,
            what="Prometheus to scrape the three services",
        )
        # rate() needs two samples in its window, rules an evaluation or two.
        wait_for(
            lambda: _value(url, "sum(rate(okr_http_requests_total[1m]))") is not None,
            within=60,
            what="rates to have two samples",
        )
        yield url
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def _query(url: str, expr: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/api/v1/query", params={"query": expr}).json()
    return answer


def _value(url: str, expr: str) -> float | None:
    """The first value of an instant query; None when there is none or no Prometheus yet."""
    try:
        result = _query(url, expr).get("data", {}).get("result", [])
    except (httpx.HTTPError, ValueError):  # not listening, or not ready (plain-text 503)
        return None
    return float(result[0]["value"][1]) if result else None


def test_every_dashboard_query_returns_data(prometheus: str) -> None:
    queries = dashboard_queries()
    assert queries
    failed = [
        (uid, title, expr, answer.get("error"))
        for uid, title, expr in queries
        if (answer := _query(prometheus, expr))["status"] != "success"
    ]
    assert failed == []

    def empty_panels() -> list[tuple[str, str, str]]:
        return [q for q in queries if not _query(prometheus, q[2])["data"]["result"]]

    # A rate over a counter first seen a scrape ago may need one more sample.
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not empty_panels(), within=30, what="every panel to have data")
    assert empty_panels() == []


def test_every_rule_evaluates(prometheus: str) -> None:
    expressions = rule_expressions()
    assert expressions
    failed = [
        (name, answer.get("error"))
        for name, expr in expressions
        if (answer := _query(prometheus, expr))["status"] != "success"
    ]
    assert failed == []

    def evaluated() -> tuple[list[str]] | None:
        """The rules Prometheus reports unhealthy, once it has evaluated all of them."""
        groups = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if len(rules) < len(expressions) or any(
            rule["lastEvaluation"].startswith("0001") for rule in rules
        ):
            return None
        return ([f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"],)

    result = wait_for(evaluated, within=30, what="Prometheus to evaluate every rule")
    assert result is not None
    assert result[0] == []
