"""The metrics service's own Prometheus metrics: readings by outcome, counted as they come,
and each KPI's value and health, computed at scrape time from the KPIs in memory (so the batch
path pays nothing). (The plumbing's metrics, shared by every service, are in
``services.shared.telemetry``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts import Health

if TYPE_CHECKING:  # the application counts READINGS: it imports this module
    from services.metrics.application import MetricsApplication

READINGS = Counter(
    "okr_readings_total",
    "KPI readings by outcome: received, recorded, duplicate, rejected.",
    ["outcome"],
)
for _outcome_name in ("received", "recorded", "duplicate", "rejected"):
    READINGS.labels(_outcome_name)  # present at zero: the ingestion SLO divides by them


class KPICollector(Collector):
    """Each KPI's current value and health, collected on each scrape. KPI keys are labels:
    bounded by the catalogue (KPIs are defined by people, not by data). A scrape during a
    batch may show the batch's readings just before their commit."""

    def __init__(self, application: MetricsApplication) -> None:
        self._application = application

    def collect(self) -> Iterator[Metric]:
        value = GaugeMetricFamily(
            "okr_kpi_value", "Current value of each KPI (latest observed).", labels=["kpi"]
        )
        health = GaugeMetricFamily(
            "okr_kpi_health",
            "1 for each KPI's current health, 0 for the others.",
            labels=["kpi", "health"],
        )
        for kpi in list(self._application.kpis.values()):  # one copy: batches add KPIs
            if kpi.latest_value is not None:
                value.add_metric([kpi.key], kpi.latest_value)
            current = kpi.health
            for state in Health:
                health.add_metric([kpi.key, state.value], 1.0 if current == state else 0.0)
        yield from (value, health)
