"""Grafana dashboards of the OKR platform, generated from code so they stay consistent.

The JSON files under ``deploy/grafana/dashboards/`` are the output of this module and are
committed; Grafana loads them through ``provisioning/dashboards/okr.yml``. Regenerate them with

    .venv/bin/python deploy/grafana/dashboards.py            # write the JSON files
    .venv/bin/python deploy/grafana/dashboards.py --check    # exit 1 listing stale files

Every query uses only metrics from ``deploy/prometheus/METRICS.md`` (plus ``up`` and the
``process_*`` metrics prometheus-client exports) and every panel reads the provisioned
datasource by its fixed uid. ``deploy`` is not a package: other code loads this file by path
(``importlib.util.spec_from_file_location``) and calls :func:`dashboard_queries`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

Json = dict[str, Any]

DATASOURCE_UID = "okr-prometheus"
DATASOURCE: Json = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
GRID_COLUMNS = 24
ALL_VALUE = ".*"
"""What a template variable stands for when "All" is selected (and in dashboard_queries)."""

SRE_UID = "okr-sre-overview"
KPI_UID = "okr-kpi-board"
JOB = 'job=~"$job"'
"""Selector of the SRE board's ``job`` template variable (multi-value, hence ``=~``)."""
RATE = "5m"


class Target(NamedTuple):
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""


class Grid:
    """Places panels left to right and wraps at 24 columns, so no two panels overlap."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0

    def at(self, w: int, h: int) -> Json:
        if not 0 < w <= GRID_COLUMNS or h <= 0:
            raise ValueError(f"bad panel size {w}x{h}")
        if self.x + w > GRID_COLUMNS:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        position = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_height = max(self.row_height, h)
        return position


def thresholds(base: str, *steps: tuple[float, str]) -> Json:
    """Absolute thresholds: ``base`` colour below the first step, then each step's colour."""
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": color, "value": value} for value, color in steps],
    }


def value_texts(texts: Mapping[str, tuple[str, str]]) -> list[Json]:
    """Value mappings ``{"1": ("UP", "green")}`` for stat and table cells."""
    options = {
        value: {"color": color, "index": index, "text": text}
        for index, (value, (text, color)) in enumerate(texts.items())
    }
    return [{"options": options, "type": "value"}]


def _targets(targets: Sequence[Target], *, instant: bool, table: bool) -> list[Json]:
    if not targets:
        raise ValueError("a panel needs at least one query")
    return [
        {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": target.expr,
            "format": "table" if table else "time_series",
            "instant": instant,
            "legendFormat": target.legend or "__auto",
            "range": not instant,
            "refId": chr(ord("A") + index),
        }
        for index, target in enumerate(targets)
    ]


def _panel(
    kind: str,
    title: str,
    description: str,
    grid_pos: Json,
    targets: list[Json],
    defaults: Json,
    options: Json,
) -> Json:
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "gridPos": grid_pos,
        "options": options,
        "targets": targets,
        "title": title,
        "type": kind,
    }


def timeseries(
    title: str,
    grid_pos: Json,
    targets: Sequence[Target],
    *,
    unit: str = "short",
    description: str = "",
    stacked: bool = False,
    bars: bool = False,
    minimum: float | None = 0,
    maximum: float | None = None,
) -> Json:
    defaults: Json = {
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "bars" if bars else "line",
            "fillOpacity": 60 if bars else 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        },
        "unit": unit,
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    options = {
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel(
        "timeseries",
        title,
        description,
        grid_pos,
        _targets(targets, instant=False, table=False),
        defaults,
        options,
    )


def stat(
    title: str,
    grid_pos: Json,
    targets: Sequence[Target],
    *,
    unit: str = "short",
    description: str = "",
    steps: Json | None = None,
    mappings: list[Json] | None = None,
) -> Json:
    defaults: Json = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "thresholds": steps or thresholds("green"),
        "unit": unit,
    }
    options = {
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }
    return _panel(
        "stat",
        title,
        description,
        grid_pos,
        _targets(targets, instant=True, table=False),
        defaults,
        options,
    )


def table(
    title: str,
    grid_pos: Json,
    targets: Sequence[Target],
    *,
    unit: str = "short",
    description: str = "",
    hide: Sequence[str] = ("Time",),
    rename: Mapping[str, str] | None = None,
    transformations: Sequence[Json] = (),
    steps: Json | None = None,
    colour_column: tuple[str, list[Json]] | None = None,
) -> Json:
    """Instant query rendered as one row per series, label columns first.

    ``colour_column`` is (column, value mappings): that column's cells get the mapping colours.
    """
    defaults: Json = {
        "color": {"mode": "thresholds"},
        "custom": {"align": "auto", "cellOptions": {"type": "auto"}},
        "thresholds": steps or thresholds("green"),
        "unit": unit,
    }
    organize = {
        "id": "organize",
        "options": {
            "excludeByName": {column: True for column in hide},
            "renameByName": dict(rename or {}),
        },
    }
    panel = _panel(
        "table",
        title,
        description,
        grid_pos,
        _targets(targets, instant=True, table=True),
        defaults,
        {"cellHeight": "sm", "showHeader": True},
    )
    panel["transformations"] = [*transformations, organize]
    if colour_column is not None:
        column, mappings = colour_column
        panel["fieldConfig"]["overrides"] = [
            {
                "matcher": {"id": "byName", "options": column},
                "properties": [
                    {"id": "mappings", "value": mappings},
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                ],
            }
        ]
    return panel


def bar_gauge(
    title: str,
    grid_pos: Json,
    targets: Sequence[Target],
    *,
    unit: str = "short",
    description: str = "",
    steps: Json | None = None,
    minimum: float = 0,
    maximum: float | None = None,
) -> Json:
    defaults: Json = {
        "color": {"mode": "thresholds"},
        "min": minimum,
        "thresholds": steps or thresholds("green"),
        "unit": unit,
    }
    if maximum is not None:
        defaults["max"] = maximum
    options = {
        "displayMode": "gradient",
        "namePlacement": "auto",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
        "sizing": "auto",
        "valueMode": "color",
    }
    return _panel(
        "bargauge",
        title,
        description,
        grid_pos,
        _targets(targets, instant=True, table=False),
        defaults,
        options,
    )


def query_variable(name: str, label: str, query: str) -> Json:
    """A multi-value template variable with "All" meaning :data:`ALL_VALUE`."""
    return {
        "allValue": ALL_VALUE,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DATASOURCE,
        "definition": query,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor"},
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    tags: Sequence[str],
    panels: Sequence[Json],
    variables: Sequence[Json] = (),
) -> Json:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "tags": ["okr"],
                "targetBlank": False,
                "title": "OKR dashboards",
                "type": "dashboards",
            }
        ],
        "panels": [{**panel, "id": index} for index, panel in enumerate(panels, start=1)],
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(tags),
        "templating": {"list": list(variables)},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


UP_DOWN = value_texts({"0": ("DOWN", "red"), "1": ("UP", "green")})
REPLAYING = value_texts({"0": ("live", "green"), "1": ("replaying", "orange")})
HEALTH = value_texts(
    {
        "healthy": ("healthy", "green"),
        "warning": ("warning", "orange"),
        "unhealthy": ("unhealthy", "red"),
    }
)
PACE = value_texts(
    {
        "achieved": ("achieved", "blue"),
        "on_track": ("on track", "green"),
        "at_risk": ("at risk", "orange"),
        "off_track": ("off track", "red"),
    }
)
SCORE_STEPS = thresholds("red", (0.4, "orange"), (0.7, "green"))


def _http_errors(by: str) -> str:
    """5xx share of HTTP requests, 0 (not "no data") while there are requests but no errors."""
    requests = f"sum by ({by}) (rate(okr_http_requests_total{{{JOB}}}[{RATE}]))"
    errors = f'sum by ({by}) (rate(okr_http_requests_total{{{JOB}, status=~"5.."}}[{RATE}]))'
    return f"({errors} or {requests} * 0) / {requests}"


def _quantile(q: float, histogram: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({histogram}_bucket{{{JOB}}}[{RATE}])))"


def sre_overview() -> Json:
    g = Grid()
    panels = [
        stat(
            "Services up",
            g.at(6, 4),
            [Target(f"up{{{JOB}}}", "{{job}}")],
            description="Prometheus scrape health per job.",
            steps=thresholds("red", (1, "green")),
            mappings=UP_DOWN,
        ),
        stat(
            "Replay in progress",
            g.at(5, 4),
            [Target(f"max by (job) (okr_replay_in_progress{{{JOB}}})", "{{job}}")],
            description="1 while a service rebuilds its state from its log at start.",
            steps=thresholds("green", (1, "orange")),
            mappings=REPLAYING,
        ),
        stat(
            "HTTP error ratio",
            g.at(4, 4),
            [
                Target(
                    f'(sum(rate(okr_http_requests_total{{{JOB}, status=~"5.."}}[{RATE}])) '
                    f"or vector(0)) / sum(rate(okr_http_requests_total{{{JOB}}}[{RATE}]))"
                )
            ],
            unit="percentunit",
            description="Share of HTTP requests answered 5xx over the last 5 minutes.",
            steps=thresholds("green", (0.001, "orange"), (0.01, "red")),
        ),
        stat(
            "Outbox backlog (total)",
            g.at(4, 4),
            [Target(f"sum(okr_outbox_backlog_events{{{JOB}}}) or vector(0)")],
            description="Events stored but not yet published, all services.",
            steps=thresholds("green", (100, "orange"), (1000, "red")),
        ),
        stat(
            "DLQ messages (1h)",
            g.at(5, 4),
            [Target(f"sum(increase(okr_dlq_messages_total{{{JOB}}}[1h])) or vector(0)")],
            description="Messages sent to a dead-letter topic in the last hour.",
            steps=thresholds("green", (1, "red")),
        ),
        timeseries(
            "Request rate",
            g.at(8, 8),
            [Target(f"sum by (job) (rate(okr_http_requests_total{{{JOB}}}[{RATE}]))", "{{job}}")],
            unit="reqps",
            description="HTTP requests per second per service (RED: rate).",
        ),
        timeseries(
            "Error ratio (5xx)",
            g.at(8, 8),
            [Target(_http_errors("job"), "{{job}}")],
            unit="percentunit",
            description="Share of HTTP requests answered 5xx per service (RED: errors).",
            maximum=1,
        ),
        timeseries(
            "Request duration p50 / p99",
            g.at(8, 8),
            [
                Target(_quantile(0.5, "okr_http_request_duration_seconds", "job"), "p50 {{job}}"),
                Target(_quantile(0.99, "okr_http_request_duration_seconds", "job"), "p99 {{job}}"),
            ],
            unit="s",
            description="HTTP request duration quantiles per service (RED: duration).",
        ),
        timeseries(
            "Consumed messages by outcome",
            g.at(12, 8),
            [
                Target(
                    f"sum by (job, topic, outcome) "
                    f"(rate(okr_consumer_messages_total{{{JOB}}}[{RATE}]))",
                    "{{job}} {{topic}} {{outcome}}",
                )
            ],
            unit="cps",
            description="Integration events consumed: applied, duplicate or dead-lettered.",
            stacked=True,
        ),
        timeseries(
            "Consumer batch duration p99",
            g.at(12, 8),
            [
                Target(
                    _quantile(0.99, "okr_consumer_batch_duration_seconds", "job, topic"),
                    "{{job}} {{topic}}",
                )
            ],
            unit="s",
            description="99th percentile of the time to apply one batch, per subscription.",
        ),
        timeseries(
            "Consumer lag (messages)",
            g.at(8, 8),
            [
                Target(
                    f"sum by (job, topic) (okr_consumer_lag_messages{{{JOB}}})",
                    "{{job}} {{topic}}",
                )
            ],
            description="Messages behind the end of each topic after the last batch.",
        ),
        timeseries(
            "Consumer lag (seconds)",
            g.at(8, 8),
            [
                Target(
                    f"max by (job, topic) (okr_consumer_lag_seconds{{{JOB}}})",
                    "{{job}} {{topic}}",
                )
            ],
            unit="s",
            description="Age of the newest handled record per topic.",
        ),
        timeseries(
            "Time since last applied event",
            g.at(8, 8),
            [
                Target(
                    f"time() - max by (job, topic) "
                    f"(okr_consumer_last_event_timestamp_seconds{{{JOB}}})",
                    "{{job}} {{topic}}",
                )
            ],
            unit="s",
            description="Now minus occurred_at of the last applied event, per topic.",
        ),
        timeseries(
            "Outbox backlog",
            g.at(8, 8),
            [
                Target(
                    f"sum by (job, topic) (okr_outbox_backlog_events{{{JOB}}})",
                    "{{job}} {{topic}}",
                )
            ],
            description="Events stored but not yet published, per topic.",
        ),
        timeseries(
            "Outbox published / errors",
            g.at(8, 8),
            [
                Target(
                    f"sum by (job, topic) (rate(okr_outbox_published_total{{{JOB}}}[{RATE}]))",
                    "published {{job}} {{topic}}",
                ),
                Target(
                    f"sum by (job, topic) (rate(okr_outbox_errors_total{{{JOB}}}[{RATE}]))",
                    "errors {{job}} {{topic}}",
                ),
            ],
            unit="cps",
            description="Events the outbox relay published and its failed attempts per second.",
        ),
        timeseries(
            "DLQ messages by topic and reason",
            g.at(8, 8),
            [
                Target(
                    f"sum by (topic, reason) (increase(okr_dlq_messages_total{{{JOB}}}[{RATE}]))",
                    "{{topic}} {{reason}}",
                )
            ],
            description="Messages sent to <topic>.dlq per 5 minutes, by source topic and reason.",
            bars=True,
            stacked=True,
        ),
        timeseries(
            "Events appended by type",
            g.at(12, 8),
            [
                Target(
                    f"sum by (job, event_type) (rate(okr_events_appended_total{{{JOB}}}[{RATE}]))",
                    "{{job}} {{event_type}}",
                )
            ],
            unit="cps",
            description="Events appended to each service's event store per second.",
            stacked=True,
        ),
        timeseries(
            "Projection position vs store head",
            g.at(12, 8),
            [
                Target(f"max by (job) (okr_store_head_position{{{JOB}}})", "head {{job}}"),
                Target(
                    f"max by (job, projection) (okr_projection_position{{{JOB}}})",
                    "{{job}} {{projection}}",
                ),
            ],
            description="Log position of the last stored event and of each projection.",
        ),
        timeseries(
            "Projection lag (events behind head)",
            g.at(8, 8),
            [
                Target(
                    f"max by (job) (okr_store_head_position{{{JOB}}}) - on (job) group_right "
                    f"max by (job, projection) (okr_projection_position{{{JOB}}})",
                    "{{job}} {{projection}}",
                )
            ],
            description="Events a projection still has to catch up with (0 when ready).",
        ),
        timeseries(
            "Replay",
            g.at(8, 8),
            [
                Target(f"max by (job) (okr_replay_in_progress{{{JOB}}})", "in progress {{job}}"),
                Target(
                    f"max by (job) (okr_replay_events_total{{{JOB}}})",
                    "events replayed at start {{job}}",
                ),
                Target(
                    f"max by (job) (okr_replay_duration_seconds{{{JOB}}})",
                    "seconds the replay took {{job}}",
                ),
            ],
            description="Replay flag (1 while rebuilding), events replayed since start and "
            "how long that took.",
        ),
        timeseries(
            "Request duration p99 by route",
            g.at(8, 8),
            [
                Target(
                    _quantile(0.99, "okr_http_request_duration_seconds", "job, route"),
                    "{{job}} {{route}}",
                )
            ],
            unit="s",
            description="99th percentile HTTP duration per route template.",
        ),
        timeseries(
            "Resident memory",
            g.at(12, 8),
            [Target(f"process_resident_memory_bytes{{{JOB}}}", "{{job}} {{instance}}")],
            unit="bytes",
            description="Resident set size of each service process.",
        ),
        timeseries(
            "CPU usage",
            g.at(12, 8),
            [Target(f"rate(process_cpu_seconds_total{{{JOB}}}[{RATE}])", "{{job}} {{instance}}")],
            unit="percentunit",
            description="CPU seconds per second of each service process (1 = one core).",
        ),
    ]
    job = query_variable("job", "Service", "label_values(okr_store_head_position, job)")
    return dashboard(
        SRE_UID,
        "OKR platform / SRE overview",
        "RED per service, consumers, outbox, DLQ, replay and process resources.",
        ["okr", "sre"],
        panels,
        [job],
    )


def okr_kpi_board() -> Json:
    """Business gauges are state, not counts: ``max by`` their identifying labels first, so a
    second scrape of the same state (a restarting or duplicated instance) never doubles it."""
    g = Grid()
    panels = [
        stat(
            "Active objectives",
            g.at(4, 4),
            [Target("sum(max by (org_unit, status) (okr_objectives)) or vector(0)")],
            steps=thresholds("blue"),
        ),
        stat(
            "Average objective score",
            g.at(4, 4),
            [Target("avg(okr_objective_score)")],
            unit="percentunit",
            steps=SCORE_STEPS,
        ),
        stat(
            "Objectives at risk or off track",
            g.at(4, 4),
            [
                Target(
                    'sum(max by (org_unit, status) (okr_objectives{status=~"at_risk|off_track"}))'
                    " or vector(0)"
                )
            ],
            steps=thresholds("green", (1, "orange")),
        ),
        stat(
            "Open gaps",
            g.at(4, 4),
            [Target("sum(max by (kind) (okr_gaps_open)) or vector(0)")],
            steps=thresholds("green", (1, "orange")),
        ),
        stat(
            "Unhealthy KPIs",
            g.at(4, 4),
            [Target('count(max by (kpi) (okr_kpi_health{health="unhealthy"} == 1)) or vector(0)')],
            steps=thresholds("green", (1, "red")),
        ),
        stat(
            "Rejected readings",
            g.at(4, 4),
            [
                Target(
                    f'sum(rate(okr_readings_total{{outcome="rejected"}}[{RATE}])) '
                    f'/ sum(rate(okr_readings_total{{outcome="received"}}[{RATE}]))'
                )
            ],
            unit="percentunit",
            description="Ingestion SLI error ratio over 5 minutes (objective: 99.9% good).",
            steps=thresholds("green", (0.001, "red")),
        ),
        table(
            "Objective scores",
            g.at(14, 9),
            [Target("max by (objective, org_unit, level, period) (okr_objective_score)")],
            unit="percentunit",
            rename={"Value": "score"},
            steps=SCORE_STEPS,
            description="Current score (0 to 1) of each active objective.",
        ),
        table(
            "Objectives by status per org unit",
            g.at(10, 9),
            [Target("max by (org_unit, status) (okr_objectives)")],
            transformations=[
                {
                    "id": "groupingToMatrix",
                    "options": {
                        "columnField": "status",
                        "rowField": "org_unit",
                        "valueField": "Value",
                    },
                }
            ],
            rename={"org_unit\\status": "org unit"},
            description="Active objectives by pace status, one row per org unit.",
        ),
        table(
            "Objective pace status",
            g.at(10, 9),
            [Target("max by (objective, org_unit, status) (okr_objective_status == 1)")],
            hide=("Time", "Value"),
            colour_column=("status", PACE),
            description="Current pace status of each objective.",
        ),
        bar_gauge(
            "Key result scores",
            g.at(14, 9),
            [
                Target(
                    "max by (objective, key_result) (okr_key_result_score)",
                    "{{objective}} / {{key_result}}",
                )
            ],
            unit="percentunit",
            steps=SCORE_STEPS,
            maximum=1,
            description="Current score (0 to 1) of each key result.",
        ),
        timeseries(
            "Objective scores over time",
            g.at(12, 8),
            [Target("max by (objective) (okr_objective_score)", "{{objective}}")],
            unit="percentunit",
            maximum=1,
        ),
        timeseries(
            "KPI value",
            g.at(12, 8),
            [Target("max by (kpi) (okr_kpi_value)", "{{kpi}}")],
            minimum=None,
            description="Latest observed value of each KPI.",
        ),
        table(
            "KPI health",
            g.at(8, 8),
            [Target("max by (kpi, health) (okr_kpi_health == 1)")],
            hide=("Time", "Value"),
            colour_column=("health", HEALTH),
            description="Current health of each KPI.",
        ),
        timeseries(
            "Readings by outcome",
            g.at(16, 8),
            [Target(f"sum by (outcome) (rate(okr_readings_total[{RATE}]))", "{{outcome}}")],
            unit="cps",
            description="KPI readings received, recorded, duplicate or rejected per second.",
        ),
        timeseries(
            "Open gaps by kind",
            g.at(12, 8),
            [Target("max by (kind) (okr_gaps_open)", "{{kind}}")],
            stacked=True,
        ),
        bar_gauge(
            "Oldest open gap age",
            g.at(12, 8),
            [Target("max by (kind) (okr_gap_oldest_open_seconds)", "{{kind}}")],
            unit="s",
            steps=thresholds("green", (86400, "orange"), (604800, "red")),
            description="Age of the oldest open gap of each kind (orange after 1 day, red 7).",
        ),
    ]
    return dashboard(
        KPI_UID,
        "OKR platform / OKR and KPI board",
        "Objective and key result scores, pace status, KPI values and health, gaps.",
        ["okr", "kpi"],
        panels,
    )


def dashboards() -> dict[str, Json]:
    """File name under :data:`DASHBOARDS_DIR` -> dashboard JSON model."""
    return {"sre-overview.json": sre_overview(), "okr-kpi.json": okr_kpi_board()}


def render(model: Json) -> str:
    """Deterministic JSON text: sorted keys, indent 2, trailing newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def dashboard_queries() -> list[tuple[str, str, str]]:
    """Every (dashboard uid, panel title, expr), ready to send to Prometheus as is.

    Template variables (``$job`` or ``${job}``) are replaced by their "All" value
    :data:`ALL_VALUE` (``.*``): they only ever appear in regex matchers (``job=~"$job"``), so
    the query selects every job, exactly as the dashboard does with "All" selected.
    """
    queries: list[tuple[str, str, str]] = []
    for model in dashboards().values():
        values = {v["name"]: v["allValue"] for v in model["templating"]["list"]}

        def substitute(match: re.Match[str], values: dict[str, str] = values) -> str:
            name = match.group(1) or match.group(2)
            return values.get(name, match.group(0))

        for panel in model["panels"]:
            for target in panel["targets"]:
                expr = _VARIABLE.sub(substitute, target["expr"])
                queries.append((model["uid"], panel["title"], expr))
    return queries


def stale_files(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Generated files that are missing or differ from what this module renders."""
    return [
        directory / name
        for name, model in dashboards().items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != render(model)
    ]


def write(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in dashboards().items():
        path = directory / name
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 listing stale files instead of writing"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("regenerate: .venv/bin/python deploy/grafana/dashboards.py", file=sys.stderr)
            return 1
        return 0
    for path in write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
