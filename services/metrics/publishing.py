"""What the metrics service publishes: each stored KPI event becomes one integration event on
``metrics.events`` (the outbox relay calls ``integration_event`` for every stored event),
keyed by the KPI's key."""

from __future__ import annotations

from typing import Any

from contracts import (
    ContractModel,
    Envelope,
    Health,
    KPIDefined,
    KPIDefinition,
    KPIRecorded,
    KPIRecordedPayload,
)
from services.metrics.domain import KPI
from services.shared.integration_events import envelope_for


def published_form(domain_event: Any) -> tuple[str, type[Envelope], ContractModel]:
    """The KPI key, integration event class and payload a stored KPI event is published as."""
    if isinstance(domain_event, KPI.Defined | KPI.Redefined):
        definition = KPIDefinition.model_validate(domain_event.definition)
        return definition.key, KPIDefined, definition
    if isinstance(domain_event, KPI.Recorded):
        # Constructed, not validated: one per reading, from events validated when recorded.
        return (
            domain_event.kpi,
            KPIRecorded,
            KPIRecordedPayload.trusted(
                kpi=domain_event.kpi,
                value=domain_event.value,
                observed_at=domain_event.observed_at,
                source=domain_event.source,
                reading_id=domain_event.reading_id,
                unit=domain_event.unit,
                health=Health(domain_event.health),
            ),
        )
    raise TypeError(f"no integration event for {type(domain_event).__qualname__}")


def integration_event(domain_event: Any, position: int, epoch: str = "") -> Envelope:
    """The envelope the outbox publishes; the aggregate id (and Kafka key) is the KPI key."""
    key, event_class, payload = published_form(domain_event)
    return envelope_for(
        event_class, domain_event, position, payload, key, epoch=epoch, trusted=True
    )
