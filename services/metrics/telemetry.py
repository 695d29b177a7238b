"""The metrics service's own Prometheus metrics: readings by outcome, and each KPI's value and
health. (The plumbing's metrics, shared by every service, are in ``services.shared.telemetry``.)
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from contracts import Health
from services.metrics.domain import KPI

READINGS = Counter(
    "okr_readings_total",
    "KPI readings by outcome: received, recorded, duplicate, rejected.",
    ["outcome"],
)
for _outcome_name in ("received", "recorded", "duplicate", "rejected"):
    READINGS.labels(_outcome_name)  # present at zero: the ingestion SLO divides by them
#: Labelled by KPI key: bounded by the catalogue (KPIs are defined by people, not by data).
KPI_VALUE = Gauge("okr_kpi_value", "Current value of each KPI (latest observed).", ["kpi"])
KPI_HEALTH = Gauge(
    "okr_kpi_health", "1 for each KPI's current health, 0 for the others.", ["kpi", "health"]
)


class KPIGauges:
    """Shows each KPI's current value and health."""

    def __init__(self) -> None:
        self._gauges: dict[str, tuple[Gauge, list[tuple[Health, Gauge]]]] = {}

    def report(self, kpi: KPI) -> None:
        gauges = self._gauges.get(kpi.key)
        if gauges is None:
            # Looked up once per KPI: a labelled child costs a lookup, and this runs for
            # every KPI of every batch.
            gauges = self._gauges[kpi.key] = (
                KPI_VALUE.labels(kpi.key),
                [(state, KPI_HEALTH.labels(kpi.key, state.value)) for state in Health],
            )
        value, health = gauges
        if kpi.latest_value is not None:
            value.set(kpi.latest_value)
        current = kpi.health
        for state, gauge in health:
            gauge.set(1 if current == state else 0)
