"""What a service's recorder adds to ``eventsourcing``'s process recorders, whatever the
database: whole batches of tracking records and idempotency keys stored with the events they
caused, the tamper-evident chain, and the lease that lets one instance at a time relay the
outbox. ``services.shared.sqlite`` and ``services.shared.postgres`` implement it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ProcessRecorder

from services.shared.audit import StoredLink, link

#: Statements per chunk of a multi-row insert or an IN list: below SQLite's 32,766 parameters.
CHUNK = 2000


class Lease(ABC):
    """Held by the one instance that does a job which must not run twice at once."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether the lease is still held (a lost database session loses it)."""

    @abstractmethod
    def release(self) -> None: ...


class BatchTrackingRecorder(ProcessRecorder, ABC):
    """A process recorder that records what was consumed in the same transaction as the
    events it caused, for whole batches at once.

    ``insert_events`` takes, besides the library's single ``tracking=``:

    - ``trackings=[...]``: one tracking row per (producer, position), so positions may arrive
      in any order across partitions (``eventsourcing`` itself takes one per transaction);
    - ``idempotency_keys=[(scope, key), ...]``: for inputs that have no producer position,
      such as KPI readings from outside systems, whose reading id is the idempotency key.

    Every stored event is also linked into the audit chain in the same transaction.

    The log is divided into epochs (``start_epoch``): consumers track positions per epoch,
    so that a store restored from a backup, or rebuilt, which numbers new events from an
    earlier position again, has them applied instead of taken for ones applied before.
    """

    @abstractmethod
    def start_epoch(self, epoch: str) -> None:
        """Begin ``epoch`` at the position after the last stored event (the next event's).
        Should another epoch already begin there, that one holds: the store keeps one."""

    @abstractmethod
    def select_epochs(self) -> list[tuple[int, str]]:
        """Every (first position, epoch), in position order."""

    @abstractmethod
    def select_links(self) -> list[StoredLink]:
        """Every stored event joined with its link, in position order, either side missing
        where the other is."""

    @abstractmethod
    def link_at(self, position: int) -> str | None:
        """The chain hash at ``position``, if an event is linked there."""

    @abstractmethod
    def select_tracked(self, application_name: str, positions: Sequence[int]) -> set[int]:
        """Which of ``positions`` of ``application_name`` have already been processed."""

    @abstractmethod
    def select_known_keys(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (scope, key) pairs were already recorded."""

    @abstractmethod
    def try_lease(self, name: str) -> Lease | None:
        """Take the lease called ``name`` if no other instance of this store holds it."""


def chain_links(
    previous: str, stored_events: Sequence[Any], positions: Sequence[int]
) -> list[tuple[int, str]]:
    """The (position, hash) links of newly stored events, continuing from ``previous``."""
    links = []
    for event, position in zip(stored_events, positions, strict=True):
        previous = link(
            previous,
            originator_text(event.originator_id),
            event.originator_version,
            event.topic,
            event.state,
        )
        links.append((position, previous))
    return links


def originator_text(originator_id: UUID | str) -> str:
    """Aggregate ids as the chain hashes them: UUIDs in hex, as SQLite stores them."""
    return originator_id.hex if isinstance(originator_id, UUID) else str(originator_id)
