"""Exactly-once effects for consumed integration events.

Kafka delivers at least once (offsets are committed after handling, and rewound on error).
Exactly-once comes from the store: every applied event leaves a tracking record keyed by its
origin (the producer's log, in its epoch) and position there, committed in the same
transaction as the events it caused. A redelivered, rebalanced or republished event finds its
tracking record and is skipped; a restored or rebuilt producer writes in a new epoch, so its
new events are applied even where their positions were used before.

Malformed messages and events the policy refuses go to the DLQ; the consumer goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Tracking

from contracts import Envelope, InvalidEvent, parse_event
from services.shared.dlq import ConsumedRecord, DeadLetters
from services.shared.store import ServiceApplication, processing_event
from services.shared.telemetry import LAST_PROCESSED, MESSAGES_APPLIED

log = logging.getLogger(__name__)

#: What a subscription hands each polled batch of raw records to.
BatchHandler = Callable[[Sequence[Any]], Awaitable[None]]

S = TypeVar("S")

#: How often a batch is retried when a concurrent writer got to an aggregate first.
CONFLICT_RETRIES = 5


class UnitOfWork:
    """The aggregates one batch touches: each loaded once, all committed together; and what
    a policy gathers in ``apply`` to coalesce in ``finish`` (its batch state).

    Used as a context manager: on leaving, it lets go of what it holds. A batch state may
    refer back to the unit (alignment's does), and without that such a cycle of a whole
    batch's objects would wait for the cyclic garbage collector, whose passes over them
    stall the service."""

    def __init__(self, application: ServiceApplication) -> None:
        self._application = application
        self._aggregates: dict[UUID, Aggregate] = {}
        self._states: dict[type, object] = {}

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._aggregates.clear()
        self._states.clear()

    def state(self, kind: type[S], make: Callable[[], S]) -> S:
        """This batch's state of type ``kind``, made by ``make`` on first use."""
        found = self._states.get(kind)
        if found is None:
            found = self._states[kind] = make()
        assert isinstance(found, kind)
        return found

    def state_if_any(self, kind: type[S]) -> S | None:
        """This batch's state of type ``kind``, if ``apply`` made one (none: nothing to do)."""
        found = self._states.get(kind)
        return found if isinstance(found, kind) else None

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        if aggregate_id not in self._aggregates:
            try:
                self._aggregates[aggregate_id] = self._application.repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
        return self._aggregates[aggregate_id]

    def add(self, aggregate: Aggregate) -> None:
        self._aggregates[aggregate.id] = aggregate

    def processing_event(self) -> ProcessingEvent[UUID]:
        return processing_event(self._aggregates.values())


class Policy(Protocol):
    """What a service does with consumed integration events, through a batch's ``unit``."""

    def apply(self, event: Envelope, unit: UnitOfWork) -> None:
        """Change aggregates for one event. Raising refuses the event: it goes to the DLQ with
        the exception as the reason, and the batch is applied without it."""

    def finish(self, unit: UnitOfWork) -> None:
        """Called once per batch after every event: the place to coalesce work (one score per
        key result per batch, not one per reading). Raising fails the batch (redelivered)."""


def count(records: Iterable[ConsumedRecord]) -> Callable[[str], None]:
    """Count records per topic under an outcome: ``count(records)("applied")``."""
    per_topic = Counter(record.topic for record in records)

    def under(outcome: str) -> None:
        for topic, amount in per_topic.items():
            MESSAGES_APPLIED.labels(topic, outcome).inc(amount)

    return under


def event_type_header(record: ConsumedRecord) -> str | None:
    """The ``event_type`` header our relays set: a hint that makes parsing cheaper."""
    for name, value in record.headers or ():
        if name == "event_type":
            return value.decode(errors="replace")
    return None


@dataclass(frozen=True)
class Refused:
    record: ConsumedRecord
    reason: str
    kind: str


class TrackedConsumer:
    """Applies batches of integration events to an application, exactly once.

    With ``event_types``, the policy sees only events of those types; the others are skipped
    (unread when their ``event_type`` header names them) and not tracked: they change nothing,
    so there is nothing to apply once. A batch left with nothing to apply stores nothing.
    """

    def __init__(
        self,
        application: ServiceApplication,
        policy: Policy,
        dead_letters: DeadLetters,
        event_types: Collection[type[Envelope]] | None = None,
    ) -> None:
        self._application = application
        self._policy = policy
        self._dead_letters = dead_letters
        self._wanted = (
            None
            if event_types is None
            else frozenset(cls.model_fields["event_type"].default for cls in event_types)
        )

    async def handle_batch(self, records: Sequence[ConsumedRecord]) -> None:
        """Handle one polled batch. An exception here makes Kafka redeliver the batch."""
        parsed: list[tuple[ConsumedRecord, Envelope]] = []
        refused: list[Refused] = []
        skipped: list[ConsumedRecord] = []
        wanted = self._wanted
        for record in records:
            hint = event_type_header(record)
            if wanted is not None and hint is not None and hint not in wanted:
                skipped.append(record)
                continue
            try:
                event = parse_event(record.value or b"", hint)
            except InvalidEvent as error:
                refused.append(Refused(record, error.reason, error.kind))
                continue
            if event.topic != record.topic:
                # A policy would ignore it or apply it from the wrong stream: neither is silent.
                reason = f"{event.event_type} belongs on {event.topic}, not on {record.topic}"
                refused.append(Refused(record, reason, "unknown_event_type"))
            elif wanted is not None and event.event_type not in wanted:
                skipped.append(record)
            else:
                parsed.append((record, event))
        count(skipped)("skipped")
        if parsed:
            refused += await asyncio.to_thread(self._apply, parsed)
        for item in refused:
            log.warning(
                "dead-lettering %s@%s: %s", item.record.topic, item.record.offset, item.reason
            )
            await self._dead_letters.send(item.record, item.reason, item.kind)
        count(item.record for item in refused)("dead_lettered")

    def _apply(self, parsed: list[tuple[ConsumedRecord, Envelope]]) -> list[Refused]:
        for attempt in range(CONFLICT_RETRIES):
            try:
                with self._application.write_lock:
                    return self._apply_once(parsed)
            except IntegrityError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                log.info("write conflict while applying a batch; retrying")
        raise AssertionError("unreachable")

    def _fresh(
        self, parsed: list[tuple[ConsumedRecord, Envelope]]
    ) -> list[tuple[Any, Envelope, Tracking]]:
        """The events of the batch not applied before (nor earlier in the same batch), each
        with the tracking record that will say it was applied."""
        by_origin: dict[str, list[int]] = {}
        origins = []
        for _, event in parsed:
            origin = event.origin
            origins.append(origin)
            by_origin.setdefault(origin, []).append(event.position)
        tracked = {
            (origin, position)
            for origin, positions in by_origin.items()
            for position in self._application.tracking_recorder.select_tracked(origin, positions)
        }
        fresh = []
        for (record, event), origin in zip(parsed, origins, strict=True):
            key = (origin, event.position)
            if key not in tracked:
                tracked.add(key)
                fresh.append((record, event, Tracking(origin, event.position)))
        return fresh

    def _applied(
        self,
        fresh: list[tuple[Any, Envelope, Tracking]],
        unit: UnitOfWork,
        refused: dict[int, Refused],
    ) -> bool:
        """Apply the events not refused yet to ``unit``; False when the policy refused one
        (added to ``refused``): partial changes may sit in the unit, so the batch starts over
        without it."""
        for index, (record, event, _) in enumerate(fresh):
            if index in refused:
                continue
            try:
                self._policy.apply(event, unit)
            except Exception as error:
                refused[index] = Refused(record, f"{type(error).__name__}: {error}", "refused")
                return False
        return True

    def _apply_once(self, parsed: list[tuple[ConsumedRecord, Envelope]]) -> list[Refused]:
        fresh = self._fresh(parsed)
        refused: dict[int, Refused] = {}
        while True:
            with UnitOfWork(self._application) as unit:
                if self._applied(fresh, unit, refused):
                    self._policy.finish(unit)
                    trackings = [tracking for _, _, tracking in fresh]
                    self._application.record_batch(unit.processing_event(), trackings)
                    break
        refused_records = {id(item.record) for item in refused.values()}
        count(r for r, _, _ in fresh if id(r) not in refused_records)("applied")
        fresh_records = {id(r) for r, _, _ in fresh}
        count(r for r, _ in parsed if id(r) not in fresh_records)("duplicate")
        latest = {record.topic: event.occurred_at for record, event, _ in fresh}
        for topic, occurred_at in latest.items():
            LAST_PROCESSED.labels(topic).set(occurred_at.timestamp())
        return list(refused.values())
