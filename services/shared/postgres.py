"""The PostgreSQL recorder of a service's store (production): the same batch tracking,
idempotency keys, audit chain and leases as the SQLite one, in the service's own schema."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from services.shared.audit import GENESIS, StoredLink
from services.shared.eventsourcing_seams import (
    check_multi_row_tracking,
    lock_events_table,
    notify_log_readers,
)
from services.shared.recorder import BatchTrackingRecorder, Lease, chain_links, originator_text


def _lock_key(*parts: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit integer) for a name."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _AdvisoryLease(Lease):
    """A session-level advisory lock on a connection kept for the purpose: PostgreSQL drops
    the lock when the session ends, so a crashed holder frees it for a standby at once."""

    def __init__(self, datastore: PostgresDatastore, connection: Connection[DictRow]) -> None:
        self._datastore = datastore
        self._connection: Connection[DictRow] | None = connection

    def alive(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute("SELECT 1")
        except Exception:
            self.release()
            return False
        return True

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Closing ends the session, which frees the lock; the pool replaces the connection.
            connection.close()
            self._datastore.pool.putconn(connection)


class BatchTrackingPostgresRecorder(BatchTrackingRecorder, PostgresProcessRecorder):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        schema = Identifier(datastore.schema)
        self._events = SQL("{}.{}").format(schema, Identifier(events_table_name))
        self._tracking = SQL("{}.{}").format(schema, Identifier(tracking_table_name))
        self._keys = SQL("{}.idempotency_keys").format(schema)
        self._chain = SQL("{}.audit_chain").format(schema)
        self._epochs = SQL("{}.log_epochs").format(schema)
        self._last_link = SQL("SELECT hash FROM {} ORDER BY position DESC LIMIT 1").format(
            self._chain
        )
        self._link_at = SQL("SELECT hash FROM {} WHERE position = %s").format(self._chain)
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (scope text, key text, PRIMARY KEY (scope, key))"
            ).format(self._keys),
            # The tamper-evident chain: one link per stored event, by its position.
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, hash text NOT NULL)"
            ).format(self._chain),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} "
                "(first_position bigint PRIMARY KEY, epoch text NOT NULL)"
            ).format(self._epochs),
        ]

    def create_table(self) -> None:
        """Create the schema and tables if missing. Instances starting together (scale-out)
        take turns: concurrent ``CREATE ... IF NOT EXISTS`` can still collide in PostgreSQL."""
        key = _lock_key("okr-create", self.datastore.schema)
        with self.datastore.get_connection() as connection:
            connection.execute("SELECT pg_advisory_lock(%s)", [key])
            try:
                connection.execute(
                    SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(self.datastore.schema))
                )
                super().create_table()
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", [key])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        """One transaction: events, their chain links, tracking records, idempotency keys.

        The events table is locked first (as the library does) so that positions commit in
        order and readers of the log never pass a gap that fills later; taking it before the
        keys also means two writers can never wait on each other's keys in a cycle."""
        ids: list[int] = []
        with self.datastore.transaction(commit=True) as curs:
            if stored_events:
                lock_events_table(self, curs)
                notify_log_readers(self, curs)
                pg_events = [
                    self.construct_pg_stored_event(
                        event.originator_id, event.originator_version, event.topic, event.state
                    )
                    for event in stored_events
                ]
                curs.execute(self.insert_events_statement, (pg_events,))
                ids = sorted(row["notification_id"] for row in curs.fetchall())
                curs.execute(self._last_link)
                last = curs.fetchone()
                links = chain_links(last["hash"] if last else GENESIS, stored_events, ids)
                curs.execute(
                    SQL("INSERT INTO {} SELECT * FROM unnest(%s::bigint[], %s::text[])").format(
                        self._chain
                    ),
                    [[position for position, _ in links], [hash_ for _, hash_ in links]],
                )
            single = kwargs.get("tracking")
            trackings = [single] if single else list(kwargs.get("trackings", ()))
            if trackings:
                check_multi_row_tracking(self, curs)
                curs.execute(
                    SQL("INSERT INTO {} SELECT * FROM unnest(%s::text[], %s::bigint[])").format(
                        self._tracking
                    ),
                    [
                        [tracking.application_name for tracking in trackings],
                        [tracking.notification_id for tracking in trackings],
                    ],
                )
            keys = kwargs.get("idempotency_keys")
            if keys:
                curs.execute(
                    SQL("INSERT INTO {} SELECT * FROM unnest(%s::text[], %s::text[])").format(
                        self._keys
                    ),
                    [[scope for scope, _ in keys], [key for _, key in keys]],
                )
        return ids

    def select_links(self) -> list[StoredLink]:
        statement = SQL(
            "SELECT COALESCE(a.position, e.notification_id) AS position, e.originator_id, "
            "e.originator_version, e.topic, e.state, a.hash FROM {} a FULL OUTER JOIN {} e "
            "ON e.notification_id = a.position ORDER BY 1"
        ).format(self._chain, self._events)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement)
            return [
                StoredLink(
                    row["position"],
                    None if row["originator_id"] is None else originator_text(row["originator_id"]),
                    row["originator_version"],
                    row["topic"],
                    None if row["state"] is None else bytes(row["state"]),
                    row["hash"],
                )
                for row in curs.fetchall()
            ]

    def link_at(self, position: int) -> str | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._link_at, [position])
            row = curs.fetchone()
            return row["hash"] if row else None

    def start_epoch(self, epoch: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Under the events table's lock, as a writer: no position is taken meanwhile.
            lock_events_table(self, curs)
            curs.execute(
                SQL(
                    "INSERT INTO {} SELECT COALESCE(MAX(notification_id), 0) + 1, %s FROM {} "
                    "ON CONFLICT (first_position) DO NOTHING"
                ).format(self._epochs, self._events),
                [epoch],
            )

    def select_epochs(self) -> list[tuple[int, str]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT first_position, epoch FROM {} ORDER BY first_position").format(
                    self._epochs
                )
            )
            return [(row["first_position"], row["epoch"]) for row in curs.fetchall()]

    def select_tracked(self, application_name: str, positions: Sequence[int]) -> set[int]:
        statement = SQL(
            "SELECT notification_id FROM {} WHERE application_name = %s "
            "AND notification_id = ANY(%s::bigint[])"
        ).format(self._tracking)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, [application_name, list(positions)])
            return {row["notification_id"] for row in curs.fetchall()}

    def select_known_keys(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if not pairs:
            return set()
        statement = SQL(
            "SELECT scope, key FROM {} WHERE (scope, key) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[]))"
        ).format(self._keys)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, [[scope for scope, _ in pairs], [key for _, key in pairs]])
            return {(row["scope"], row["key"]) for row in curs.fetchall()}

    def try_lease(self, name: str) -> Lease | None:
        connection = self.datastore.pool.getconn()
        try:
            row = connection.execute(
                "SELECT pg_try_advisory_lock(%s) AS held",
                [_lock_key("okr-lease", self.datastore.schema, name)],
            ).fetchone()
        except Exception:
            self.datastore.pool.putconn(connection)
            raise
        if row is None or not row["held"]:
            self.datastore.pool.putconn(connection)
            return None
        return _AdvisoryLease(self.datastore, connection)
