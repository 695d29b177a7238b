"""Prometheus metrics of the service plumbing, shared by the three services.

One process runs one service, so the default registry holds one service's metrics and the
``job`` label that Prometheus adds tells them apart. All names carry the ``okr_`` prefix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPENDED = Counter(
    "okr_events_appended_total", "Events appended to this service's event store.", ["event_type"]
)
OUTBOX_PUBLISHED = Counter(
    "okr_outbox_published_total", "Events the outbox relay published to Kafka.", ["topic"]
)
OUTBOX_BACKLOG = Gauge(
    "okr_outbox_backlog_events", "Events stored but not yet published.", ["topic"]
)
OUTBOX_POSITION = Gauge(
    "okr_outbox_position", "Log position up to which every event is published.", ["topic"]
)
OUTBOX_ACTIVE = Gauge(
    "okr_outbox_active",
    "1 while this instance relays the outbox, 0 while it stands by for another instance.",
    ["topic"],
)
OUTBOX_ERRORS = Counter(
    "okr_outbox_errors_total", "Failed attempts of the outbox relay to publish.", ["topic"]
)
MESSAGES_APPLIED = Counter(
    "okr_consumer_messages_total",
    "Consumed messages by outcome: applied, duplicate (already tracked), dead_lettered or "
    "skipped (of a type the consumer does not act on).",
    ["topic", "outcome"],
)
BATCH_SECONDS = Histogram(
    "okr_consumer_batch_duration_seconds",
    "Time to apply one consumed batch, store commit included.",
    ["topic"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "okr_consumer_batch_size_messages",
    "Records per consumed batch.",
    ["topic"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
LAST_PROCESSED = Gauge(
    "okr_consumer_last_event_timestamp_seconds",
    "occurred_at of the last event applied from a topic, as a Unix time.",
    ["topic"],
)
DLQ_MESSAGES = Counter(
    "okr_dlq_messages_total",
    "Messages sent to a dead-letter topic, by reason.",
    ["topic", "reason"],
)
CONSUMER_LAG = Gauge(
    "okr_consumer_lag_messages",
    "Messages behind the partition's end after the last handled batch.",
    ["topic", "partition"],
)
CONSUMER_LAG_SECONDS = Gauge(
    "okr_consumer_lag_seconds",
    "Age (broker timestamp to now) of the newest record handled from a topic.",
    ["topic"],
)
STORE_HEAD = Gauge("okr_store_head_position", "Position of the last event in the service's log.")
REPLAY_IN_PROGRESS = Gauge(
    "okr_replay_in_progress", "1 while the service rebuilds its state from its log at start."
)
REPLAY_EVENTS = Counter("okr_replay_events_total", "Events replayed from the log at start.")
REPLAY_DURATION = Gauge(
    "okr_replay_duration_seconds", "How long the start-up rebuild of the state from the log took."
)
PROJECTION_POSITION = Gauge(
    "okr_projection_position", "Log position a projection has caught up to.", ["projection"]
)
HTTP_REQUESTS = Counter(
    "okr_http_requests_total",
    "HTTP requests by route template and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "okr_http_request_duration_seconds",
    "HTTP request duration by route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@contextmanager
def replaying() -> Iterator[None]:
    """Mark the start-up rebuild of a service's state from its log."""
    REPLAY_IN_PROGRESS.set(1)
    began = time.perf_counter()
    try:
        yield
    finally:
        REPLAY_DURATION.set(time.perf_counter() - began)
        REPLAY_IN_PROGRESS.set(0)


#: Why a message goes to a DLQ: the ``kind`` of ``contracts.InvalidEvent`` and of rejected
#: readings, plus ``refused`` by a policy. A fixed set, so the label stays bounded.
DLQ_REASONS = (
    "not_json",
    "oversized",
    "invalid_fields",
    "unknown_event_type",
    "bad_schema_version",
    "future_schema_version",
    "no_upcaster",
    "refused",
    "rejected",
)


def declare_consumed(topic: str) -> None:
    """Create a consumed topic's series at zero, so dashboards and alerts see them before the
    first incident (prometheus-client shows a labelled series only once it is used)."""
    for outcome in ("applied", "duplicate", "dead_lettered", "skipped"):
        MESSAGES_APPLIED.labels(topic, outcome)
    for reason in DLQ_REASONS:
        DLQ_MESSAGES.labels(topic, reason)
