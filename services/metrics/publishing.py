"""What the metrics service publishes: each stored KPI event becomes one integration event on
``metrics.events`` (the outbox relay calls ``integration_event`` for every stored event),
keyed by the KPI's key."""

from __future__ import annotations

from typing import Any

from contracts import KPIDefined, KPIDefinition, KPIRecorded
from services.metrics.domain import KPI
from services.shared.integration_events import Publication, publication_for


def integration_event(domain_event: Any, position: int, epoch: str = "") -> Publication:
    """What the outbox publishes; the aggregate id (and Kafka key) is the KPI key."""
    if isinstance(domain_event, KPI.Recorded):
        # The stored fields as they are, in the payload's order: one per reading, from events
        # validated when recorded.
        payload = {
            "kpi": domain_event.kpi,
            "value": domain_event.value,
            "observed_at": domain_event.observed_at,
            "source": domain_event.source,
            "reading_id": domain_event.reading_id,
            "unit": domain_event.unit,
            "health": domain_event.health,
        }
        return publication_for(
            KPIRecorded,
            domain_event,
            position,
            payload,
            domain_event.kpi,
            epoch=epoch,
            trusted=True,
        )
    if isinstance(domain_event, KPI.Defined | KPI.Redefined):
        definition = KPIDefinition.model_validate(domain_event.definition)
        return publication_for(
            KPIDefined, domain_event, position, definition, definition.key, epoch=epoch
        )
    raise TypeError(f"no integration event for {type(domain_event).__qualname__}")
