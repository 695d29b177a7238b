"""Kafka topic names. One topic per producing service, plus the inbound readings topic."""

from typing import Final

GOAL_EVENTS: Final = "goal.events"
METRICS_EVENTS: Final = "metrics.events"
ALIGNMENT_EVENTS: Final = "alignment.events"
KPI_READINGS: Final = "kpi.readings"

#: The head of each service's tamper-evident chain (position and hash), keyed by service.
AUDIT_HEADS: Final = "audit.heads"

#: Every topic the system reads or writes, in a stable order (the DLQs follow from these).
ALL_TOPICS: Final = (GOAL_EVENTS, METRICS_EVENTS, ALIGNMENT_EVENTS, KPI_READINGS)


def dlq_topic(topic: str) -> str:
    """The dead-letter topic paired with a consumed topic."""
    return f"{topic}.dlq"
