"""Grafana provisioning and dashboards: generated from deploy/grafana/dashboards.py, committed
as JSON, wired to the provisioned datasource, and querying only catalogued metrics."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
GENERATOR = GRAFANA / "dashboards.py"
CATALOGUE = ROOT / "deploy" / "prometheus" / "METRICS.md"
DATASOURCE = {"type": "prometheus", "uid": "okr-prometheus"}
UIDS = {"sre-overview.json": "okr-sre-overview", "okr-kpi.json": "okr-kpi-board"}
REGENERATE = "regenerate with: .venv/bin/python deploy/grafana/dashboards.py"


def load_generator() -> ModuleType:
    """deploy/ is not a package: load the generator by path."""
    spec = importlib.util.spec_from_file_location("okr_grafana_dashboards", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENERATED = load_generator()


def generated() -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = GENERATED.dashboards()
    return models


def committed() -> dict[str, dict[str, Any]]:
    return {
        name: json.loads((GRAFANA / "dashboards" / name).read_text(encoding="utf-8"))
        for name in UIDS
    }


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = model["panels"]
    return found


def catalogue() -> tuple[set[str], set[str], list[str]]:
    """(metric names, histogram names, name prefixes from ``okr_x_*`` rows) of METRICS.md."""
    names: set[str] = set()
    histograms: set[str] = set()
    prefixes: list[str] = []
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        row = re.match(r"\|\s*`(okr_[a-z0-9_]+\*?)`\s*\|\s*([a-z]*)\s*\|", line)
        if row is None:
            continue
        name, kind = row.groups()
        if name.endswith("*"):
            prefixes.append(name.rstrip("*"))
        else:
            names.add(name)
        if kind == "histogram":
            histograms.add(name)
    return names, histograms, prefixes


def unknown_metrics(expr: str) -> list[str]:
    """``okr_`` names in ``expr`` that METRICS.md does not define. Counters are catalogued with
    their ``_total``; histograms by base name, queried as ``_bucket``, ``_sum`` or ``_count``."""
    names, histograms, prefixes = catalogue()
    unknown = []
    for token in re.findall(r"\bokr_[a-z0-9_]+", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", token)
        if token in names or (base != token and base in histograms):
            continue
        if any(token.startswith(prefix) for prefix in prefixes):
            continue
        unknown.append(token)
    return unknown


def test_committed_json_is_what_the_generator_writes() -> None:
    render: Callable[[dict[str, Any]], str] = GENERATED.render
    assert set(generated()) == set(UIDS)
    for name, model in generated().items():
        path = GRAFANA / "dashboards" / name
        assert path.is_file(), f"{path} missing; {REGENERATE}"
        assert path.read_text(encoding="utf-8") == render(model), f"{path} is stale; {REGENERATE}"


def test_check_mode_lists_stale_files(tmp_path: Path) -> None:
    assert [path.name for path in GENERATED.stale_files(tmp_path)] == list(UIDS)
    GENERATED.write(tmp_path)
    assert GENERATED.stale_files(tmp_path) == []
    (tmp_path / "okr-kpi.json").write_text("{}\n", encoding="utf-8")
    assert GENERATED.stale_files(tmp_path) == [tmp_path / "okr-kpi.json"]


def test_generator_runs_as_a_script_and_the_committed_files_are_fresh() -> None:
    run = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, f"{run.stderr}{REGENERATE}"


@pytest.mark.parametrize(("name", "uid"), UIDS.items())
def test_dashboard_has_its_fixed_uid_and_schema(name: str, uid: str) -> None:
    model = committed()[name]
    assert model["uid"] == uid
    assert model["schemaVersion"] == 39
    assert model["id"] is None
    assert panels(model)


@pytest.mark.parametrize("name", UIDS)
def test_panel_ids_and_titles_are_unique(name: str) -> None:
    found = panels(committed()[name])
    ids = [panel["id"] for panel in found]
    titles = [panel["title"] for panel in found]
    assert len(set(ids)) == len(ids), ids
    assert all(isinstance(panel_id, int) and panel_id > 0 for panel_id in ids)
    assert len(set(titles)) == len(titles), titles


@pytest.mark.parametrize("name", UIDS)
def test_every_panel_queries_the_provisioned_datasource(name: str) -> None:
    for panel in panels(committed()[name]):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), f"{panel['title']} has an empty query"


@pytest.mark.parametrize("name", UIDS)
def test_no_two_panels_overlap(name: str) -> None:
    boxes = [(panel["title"], panel["gridPos"]) for panel in panels(committed()[name])]
    for title, box in boxes:
        assert box["x"] >= 0
        assert box["y"] >= 0
        assert box["w"] > 0
        assert box["h"] > 0
        assert box["x"] + box["w"] <= 24, f"{title} is wider than the grid"
    for index, (title, a) in enumerate(boxes):
        for other, b in boxes[index + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"{title!r} overlaps {other!r}"


def test_sre_board_filters_every_query_by_the_job_variable() -> None:
    model = committed()["sre-overview.json"]
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    job = variables["job"]
    assert job["type"] == "query"
    assert job["datasource"] == DATASOURCE
    assert job["includeAll"]
    assert job["allValue"] == ".*"
    for panel in panels(model):
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], panel["title"]


def test_catalogue_check_rejects_names_metrics_md_does_not_define() -> None:
    names, histograms, _ = catalogue()
    assert "okr_http_requests_total" in names
    assert "okr_http_request_duration_seconds" in histograms
    assert unknown_metrics("rate(okr_http_request_duration_seconds_bucket[5m])") == []
    assert unknown_metrics("okr_faststream_received_messages_total") == []
    assert unknown_metrics("okr_http_requests") == ["okr_http_requests"]
    assert unknown_metrics("okr_consumer_lag_messages_bucket") == [
        "okr_consumer_lag_messages_bucket"
    ]
    assert unknown_metrics("okr_nonexistent_total") == ["okr_nonexistent_total"]


@pytest.mark.parametrize("name", UIDS)
def test_queries_use_only_catalogued_metrics(name: str) -> None:
    for panel in panels(committed()[name]):
        for target in panel["targets"]:
            expr = target["expr"]
            assert unknown_metrics(expr) == [], f"{panel['title']}: {expr}"
            # Any other selector is ``up`` or a process_* metric from prometheus-client.
            for selector in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr):
                assert selector.startswith(("okr_", "process_")) or selector == "up", expr


def test_dashboard_queries_are_plain_promql() -> None:
    queries: list[tuple[str, str, str]] = GENERATED.dashboard_queries()
    targets = sum(
        len(panel["targets"]) for model in committed().values() for panel in panels(model)
    )
    assert len(queries) == targets
    assert {uid for uid, _, _ in queries} == set(UIDS.values())
    for uid, title, expr in queries:
        assert "$" not in expr, f"{uid} / {title}: {expr}"
        assert expr.count("(") == expr.count(")"), expr
        assert expr.count("{") == expr.count("}"), expr
    assert any('job=~".*"' in expr for _, _, expr in queries)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_queries_parse_as_promql(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule."""
    queries: list[tuple[str, str, str]] = GENERATED.dashboard_queries()
    rules = [
        {"record": f"grafana_query_{index}", "expr": expr}
        for index, (_, _, expr) in enumerate(queries)
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    run = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_datasource_is_provisioned_with_the_fixed_uid() -> None:
    path = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
    provisioned = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert provisioned["apiVersion"] == 1
    [datasource] = provisioned["datasources"]
    assert datasource["uid"] == DATASOURCE["uid"] == GENERATED.DATASOURCE_UID
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True


def test_dashboards_are_provisioned_from_the_dashboards_path() -> None:
    path = GRAFANA / "provisioning" / "dashboards" / "okr.yml"
    provisioned = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert provisioned["apiVersion"] == 1
    [provider] = provisioned["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "OKR"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
