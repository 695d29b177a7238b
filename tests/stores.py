"""Where a test's services keep their events: SQLite files (the embedded default) or
PostgreSQL, one schema per service, dropped after the test.

The PostgreSQL server is the suite's own: a throwaway cluster (``tests/postgres_server.py``)
started the first time a test takes the postgres store, stopped and removed at the end of the
session. Setting any of ``OKR_TEST_POSTGRES_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD`` or
``_DBNAME`` uses that existing server instead (the others default to 127.0.0.1, 5432,
postgres, no password, test). Without the server binaries, or without that server, the
PostgreSQL cases are skipped with a message, except under ``CI=true``, where they fail: CI
must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest
from psycopg import sql

from services.shared.settings import Settings
from tests.postgres_server import (
    BinariesMissing,
    Cluster,
    ClusterError,
    PostgresServer,
    find_bindir,
)
from tests.support import unavailable

#: The database the tests' schemas live in, on the suite's own cluster.
DBNAME = "test"

#: Runs a test that takes the ``store`` fixture once on SQLite and once on PostgreSQL.
both_stores = pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)


@dataclass(frozen=True)
class Store:
    kind: Literal["sqlite", "postgres"]
    #: Prefix of this test's PostgreSQL schemas (``<prefix>_<service>``).
    prefix: str = ""
    #: The PostgreSQL server the schemas are on (postgres stores only).
    server: PostgresServer | None = None

    def env(self, service: str) -> dict[str, str]:
        """Environment for a service process (``ServiceProcess(extra_env=...)``)."""
        return {
            f"OKR_{name.upper()}": str(value)
            for name, value in self._fields(service).items()
            if name != "postgres_password" or value
        }

    def settings(
        self, service: Literal["goal", "metrics", "alignment"], data_dir: Path, **more: Any
    ) -> Settings:
        """Settings for a store opened in the test's own process."""
        return Settings(service=service, data_dir=data_dir, **self._fields(service), **more)

    def _fields(self, service: str) -> dict[str, Any]:
        if self.kind == "sqlite":
            return {"persistence": "sqlite"}
        assert self.server is not None, "a postgres store has a server"
        return {
            "persistence": "postgres",
            "postgres_host": self.server.host,
            "postgres_port": self.server.port,
            "postgres_user": self.server.user,
            "postgres_password": self.server.password,
            "postgres_dbname": self.server.dbname,
            "postgres_schema": f"{self.prefix}_{service}",
        }


def configured_server() -> PostgresServer | None:
    """The existing server the ``OKR_TEST_POSTGRES_*`` variables point at, if any is set
    (an empty variable counts as unset)."""
    names = ("HOST", "PORT", "USER", "PASSWORD", "DBNAME")
    given = {
        name: value for name in names if (value := os.environ.get(f"OKR_TEST_POSTGRES_{name}"))
    }
    if not given:
        return None
    return PostgresServer(
        host=given.get("HOST", "127.0.0.1"),
        port=int(given.get("PORT", "5432")),
        user=given.get("USER", "postgres"),
        password=given.get("PASSWORD", ""),
        dbname=given.get("DBNAME", DBNAME),
    )


def serve_postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL (the ``postgres_server`` fixture): the configured server,
    else a cluster of the suite's own, stopped and removed when the generator closes."""
    configured = configured_server()
    if configured is not None:
        yield configured
        return
    cluster = _start_cluster()
    try:
        yield cluster.server
    finally:
        cluster.stop()


# The helpers below report after their except blocks: inside one, the report would carry the
# caught exception as a chained traceback around the one-line message.


def _start_cluster() -> Cluster:
    bindir = _bindir()
    try:
        return Cluster.start(bindir, DBNAME)
    except ClusterError as error:
        failure = str(error)
    pytest.fail(failure, pytrace=False)


def _bindir() -> Path:
    try:
        return find_bindir()
    except BinariesMissing as missing:
        message = f"{missing} (make test does it as root)"
    unavailable(message)


def _connect(server: PostgresServer) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            dbname=server.dbname,
            connect_timeout=3,
            autocommit=True,
        )
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0]
    unavailable(
        f"PostgreSQL is not reachable at {server.host}:{server.port} (database {server.dbname}, "
        f"user {server.user}): {reason}. Start it, or unset OKR_TEST_POSTGRES_* to let the "
        "suite start its own."
    )


def open_store(kind: str, server: PostgresServer | None = None) -> Iterator[Store]:
    """A store of ``kind``; a postgres store needs the server (the ``postgres_server``
    fixture's)."""
    if kind == "sqlite":
        yield Store("sqlite")
        return
    if server is None:
        raise ValueError("a postgres store needs a server: the postgres_server fixture's")
    connection = _connect(server)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    try:
        yield Store("postgres", prefix, server)
    finally:
        with connection:
            schemas = connection.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix + "_"]
            ).fetchall()
            for (schema,) in schemas:
                connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
