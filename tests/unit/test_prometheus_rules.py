"""deploy/prometheus: the scrape configuration and the rules are valid for Prometheus itself
(promtool), the rules' unit tests pass, every alert carries what the on-call needs, and every
rule builds on metrics of the catalogue (deploy/prometheus/METRICS.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
ALERT_FILES = [PROMETHEUS / "rules" / "alerts.yml", PROMETHEUS / "rules" / "slo-ingestion.yml"]
SERVICES = {"goal": 8001, "metrics": 8002, "alignment": 8003}
#: Every job scraped: the services and the web console.
SCRAPED = SERVICES | {"web": 8000}

promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool missing: apt-get install prometheus (make test installs it as root)",
)


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for path in ALERT_FILES for rule in rules(path) if "alert" in rule]


@promtool
@pytest.mark.parametrize(
    "command",
    [
        ["check", "config", "deploy/prometheus/prometheus.yml"],
        ["check", "config", "deploy/prometheus/prometheus.docker.yml"],
        ["check", "rules", *(str(path.relative_to(ROOT)) for path in RULE_FILES)],
        ["test", "rules", *(str(path.relative_to(ROOT)) for path in TEST_FILES)],
    ],
    ids=["config", "docker-config", "rules", "rule-unit-tests"],
)
def test_promtool_accepts(command: list[str]) -> None:
    run = subprocess.run(
        ["promtool", *command], capture_output=True, text=True, cwd=ROOT, check=False, timeout=60
    )
    assert run.returncode == 0, f"promtool {' '.join(command)}\n{run.stdout}\n{run.stderr}"


def test_the_files_promtool_checks_exist() -> None:
    names = {path.name for path in RULE_FILES}
    assert {"recording.yml", "alerts.yml", "slo-ingestion.yml"} <= names
    assert TEST_FILES, "no deploy/prometheus/tests/*.test.yml"


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    found = alerts()
    assert found
    for alert in found:
        assert alert.get("labels", {}).get("severity") in {"critical", "warning", "info"}, alert
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert str(annotations.get(key, "")).strip(), f"{alert['alert']}: no {key}"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for group in load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - firing == set(), "alerts never expected to fire in a .test.yml"
    assert names - silent == set(), "alerts never expected to stay silent in a .test.yml"


def test_recording_rules_follow_level_metric_operations() -> None:
    pattern = re.compile(r"^[a-z_]+:[a-z_]+:[a-z0-9_]+$")
    for path in RULE_FILES:
        for rule in rules(path):
            if "record" in rule and rule["record"] != "sloth_slo_info":
                assert pattern.match(rule["record"]), rule["record"]


def test_rules_use_only_catalogued_metrics() -> None:
    catalogue = set(re.findall(r"`(okr_[a-z_]+)`", (PROMETHEUS / "METRICS.md").read_text()))
    for path in RULE_FILES:
        for rule in rules(path):
            # okr_... names, not the middle part of a recorded name (job:okr_...:rate5m)
            for name in re.findall(r"(?<![\w:])okr_[a-z_]+\b(?!:)", rule["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", name)
                assert name in catalogue or base in catalogue, f"{path.name}: {name}"


def test_recording_rules_used_by_alerts_exist() -> None:
    recorded = {rule["record"] for path in RULE_FILES for rule in rules(path) if "record" in rule}
    for alert in alerts():
        for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", alert["expr"]):
            assert name in recorded, f"{alert['alert']} uses {name}, which no rule records"


def test_scrape_configs_name_the_services_and_the_console() -> None:
    for config, host in (("prometheus.yml", None), ("prometheus.docker.yml", "service")):
        loaded = load(PROMETHEUS / config)
        assert loaded["global"]["scrape_interval"] == "5s"
        assert loaded["rule_files"] == ["rules/*.yml"]
        targets = {
            job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
            for job in loaded["scrape_configs"]
        }
        assert targets == {
            job: [f"{'127.0.0.1' if host is None else job}:{port}"] for job, port in SCRAPED.items()
        }, config
