"""Plumbing all three services share: settings, the event store, the outbox relay, the
exactly-once consumer, the DLQ, HTTP probes and metrics. Written once, used by each service."""

from services.shared.consumer import Policy, TrackedConsumer, UnitOfWork
from services.shared.dlq import DeadLetters
from services.shared.errors import Conflict, NotFound, RuleViolation, Violation
from services.shared.outbox import OutboxRelay
from services.shared.runtime import ServiceRuntime
from services.shared.settings import Settings
from services.shared.store import ServiceApplication, store_environment

__all__ = [
    "Conflict",
    "DeadLetters",
    "NotFound",
    "OutboxRelay",
    "Policy",
    "RuleViolation",
    "ServiceApplication",
    "ServiceRuntime",
    "Settings",
    "TrackedConsumer",
    "UnitOfWork",
    "Violation",
    "store_environment",
]
