"""The alignment graph rebuilt offline, straight from ``goal.events`` and ``metrics.events``,
by the service's own policy: what ``okr replay --from-kafka`` shows, and what the fault suite
compares the live service with."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Tracking

from contracts import GOAL_EVENTS, METRICS_EVENTS, Envelope, InvalidEvent, parse_event
from services.alignment.application import AlignmentApplication
from services.alignment.policy import AlignmentPolicy
from services.shared.broker import read_topic
from services.shared.consumer import UnitOfWork, event_type_header
from services.shared.settings import Settings
from services.shared.store import store_environment

#: Events applied per transaction.
REPLAY_BATCH = 2000


async def rebuild_from_topics(
    client_options: dict[str, Any], until: datetime, data_dir: Path
) -> AlignmentApplication:
    """The alignment graph as of ``until``, rebuilt straight from ``goal.events`` and
    ``metrics.events`` (no service involved), by the service's own policy with its clock set
    to ``until``: the same rules, so the same answer. Events after ``until``, invalid ones and
    republished copies are left out. The store lives in ``data_dir`` (a scratch directory)."""
    events: dict[tuple[str, int], Envelope] = {}  # by (origin, position): copies once
    for topic in (GOAL_EVENTS, METRICS_EVENTS):
        for record in await read_topic(client_options, topic):
            try:
                event = parse_event(record.value or b"", event_type_header(record))
            except InvalidEvent:
                continue
            if event.occurred_at <= until:
                events[(event.origin, event.position)] = event
    application = AlignmentApplication(
        env=store_environment(Settings(service="alignment", data_dir=data_dir))
    )
    policy = AlignmentPolicy(application)
    policy.clock = lambda: until
    ordered = sorted(events.values(), key=lambda event: (event.occurred_at, event.position))
    for start in range(0, len(ordered), REPLAY_BATCH):
        batch = ordered[start : start + REPLAY_BATCH]
        with UnitOfWork(application) as unit:
            for event in batch:
                policy.apply(event, unit)
            policy.finish(unit)
            application.record_batch(
                unit.processing_event(), [Tracking(e.origin, e.position) for e in batch]
            )
    return application
