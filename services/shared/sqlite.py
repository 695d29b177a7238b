"""The SQLite recorder of a service's store (the embedded default)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder

from services.shared.audit import GENESIS, StoredLink
from services.shared.eventsourcing_seams import check_multi_row_tracking
from services.shared.recorder import (
    CHUNK,
    BatchTrackingRecorder,
    Lease,
    chain_links,
    originator_text,
)


class _ProcessLease(Lease):
    """An SQLite store belongs to one process, which therefore always holds its leases."""

    def alive(self) -> bool:
        return True

    def release(self) -> None:
        pass


@functools.lru_cache(maxsize=1 << 16)
def _uuid(text: str) -> UUID:
    return UUID(text)


class BatchTrackingSQLiteRecorder(BatchTrackingRecorder, SQLiteProcessRecorder):
    def convert_originator_id(self, originator_id: str) -> UUID | str:
        # A service has few aggregates and many events each: parse each id once, not once
        # per event read (parsing UUIDs took a large share of a replay's time).
        if self.datastore.originator_id_type == "uuid":
            return _uuid(originator_id)
        return originator_id

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS idempotency_keys ("
            "scope TEXT, key TEXT, PRIMARY KEY (scope, key)) WITHOUT ROWID",
            # The tamper-evident chain: one link per stored event, by its position.
            "CREATE TABLE IF NOT EXISTS audit_chain (position INTEGER PRIMARY KEY, hash TEXT)",
            # Where each epoch of the log begins (see BatchTrackingRecorder).
            "CREATE TABLE IF NOT EXISTS log_epochs "
            "(first_position INTEGER PRIMARY KEY, epoch TEXT NOT NULL)",
        ]

    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        """One transaction: events, their chain links, tracking records, idempotency keys."""
        with self.datastore.transaction(commit=True) as c:
            returning = self._insert_rows(c, stored_events)
            single = kwargs.get("tracking")
            trackings = [single] if single else kwargs.get("trackings", ())
            if trackings:
                # One statement for the batch (as on PostgreSQL), not the library's one per
                # record: a consumer tracks every message it applies. A position tracked
                # before fails the whole insert, as it fails the library's.
                check_multi_row_tracking(self, c)
                c.executemany(
                    self.insert_tracking_statement,  # multi-row tracking: see store_environment
                    [
                        {
                            "application_name": t.application_name,
                            "notification_id": t.notification_id,
                        }
                        for t in trackings
                    ],
                )
            keys = kwargs.get("idempotency_keys")
            if keys:
                c.executemany("INSERT INTO idempotency_keys VALUES (?, ?)", keys)
            return returning

    def _insert_rows(self, c: SQLiteCursor, stored_events: Sequence[Any]) -> list[int]:
        """Insert events with one multi-row statement per chunk instead of one statement per
        event (the library's way): the hot path of ingestion. New rows take rowids (the
        notification ids) in insertion order, so the sorted returned ids match the events."""
        ids: list[int] = []
        for start in range(0, len(stored_events), CHUNK):
            chunk = stored_events[start : start + CHUNK]
            values = [
                field
                for event in chunk
                for field in (
                    originator_text(event.originator_id),
                    event.originator_version,
                    event.topic,
                    event.state,
                )
            ]
            rows = ",".join("(?,?,?,?)" for _ in chunk)
            c.execute(f"INSERT INTO {self.events_table_name} VALUES {rows} RETURNING rowid", values)
            ids += sorted(row[0] for row in c.fetchall())
        if ids:
            c.execute("SELECT hash FROM audit_chain ORDER BY position DESC LIMIT 1")
            last = c.fetchone()
            links = chain_links(last[0] if last else GENESIS, stored_events, ids)
            c.executemany("INSERT INTO audit_chain VALUES (?, ?)", links)
        return ids

    def select_links(self) -> list[StoredLink]:
        statement = (
            "SELECT COALESCE(a.position, e.rowid), e.originator_id, e.originator_version, "
            f"e.topic, e.state, a.hash FROM audit_chain a FULL OUTER JOIN {self.events_table_name}"
            " e ON e.rowid = a.position ORDER BY COALESCE(a.position, e.rowid)"
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement)
            return [StoredLink(*row) for row in c.fetchall()]

    def link_at(self, position: int) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT hash FROM audit_chain WHERE position = ?", [position])
            row = c.fetchone()
            return row[0] if row else None

    def start_epoch(self, epoch: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT OR IGNORE INTO log_epochs SELECT COALESCE(MAX(rowid), 0) + 1, ? "
                f"FROM {self.events_table_name}",
                [epoch],
            )

    def select_epochs(self) -> list[tuple[int, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT first_position, epoch FROM log_epochs ORDER BY first_position")
            return [(row[0], row[1]) for row in c.fetchall()]

    def select_tracked(self, application_name: str, positions: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for start in range(0, len(positions), CHUNK):
            chunk = positions[start : start + CHUNK]
            with self.datastore.transaction(commit=False) as c:
                c.execute(
                    "SELECT notification_id FROM tracking WHERE application_name=? "
                    f"AND notification_id IN ({','.join('?' * len(chunk))})",
                    [application_name, *chunk],
                )
                found.update(row[0] for row in c.fetchall())
        return found

    def select_known_keys(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for start in range(0, len(pairs), CHUNK):
            chunk = pairs[start : start + CHUNK]
            rows = ",".join("(?,?)" for _ in chunk)
            with self.datastore.transaction(commit=False) as c:
                # A subquery, not a bare VALUES list: SQLite searches the primary key for the
                # former and scans the whole table for the latter (the ingest slowed as the
                # table grew).
                statement = (
                    "SELECT scope, key FROM idempotency_keys WHERE (scope, key) IN "
                    f"(SELECT column1, column2 FROM (VALUES {rows}))"
                )
                c.execute(statement, [part for pair in chunk for part in pair])
                found.update((scope, key) for scope, key in c.fetchall())
        return found

    def try_lease(self, name: str) -> Lease | None:
        return _ProcessLease()
