"""Where a test's services keep their events: SQLite files (the embedded default) or
PostgreSQL, one schema per service, dropped after the test.

The PostgreSQL server is the one at ``OKR_TEST_POSTGRES_HOST``:``OKR_TEST_POSTGRES_PORT``
(default 127.0.0.1:5432, user postgres, database test, as on the development machines and
in CI). Without it the PostgreSQL cases are skipped with a message, except under ``CI=true``,
where they fail: CI must run them.
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

HOST = os.environ.get("OKR_TEST_POSTGRES_HOST", "127.0.0.1")
PORT = int(os.environ.get("OKR_TEST_POSTGRES_PORT", "5432"))
USER = os.environ.get("OKR_TEST_POSTGRES_USER", "postgres")
PASSWORD = os.environ.get("OKR_TEST_POSTGRES_PASSWORD", "")
DBNAME = os.environ.get("OKR_TEST_POSTGRES_DBNAME", "test")


#: Runs a test that takes the ``store`` fixture once on SQLite and once on PostgreSQL.
both_stores = pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)


@dataclass(frozen=True)
class Store:
    kind: Literal["sqlite", "postgres"]
    #: Prefix of this test's PostgreSQL schemas (``<prefix>_<service>``).
    prefix: str = ""

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
        return {
            "persistence": "postgres",
            "postgres_host": HOST,
            "postgres_port": PORT,
            "postgres_user": USER,
            "postgres_password": PASSWORD,
            "postgres_dbname": DBNAME,
            "postgres_schema": f"{self.prefix}_{service}",
        }


def _connect() -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=HOST,
        port=PORT,
        user=USER,
        password=PASSWORD,
        dbname=DBNAME,
        connect_timeout=3,
        autocommit=True,
    )


def open_store(kind: str) -> Iterator[Store]:
    if kind == "sqlite":
        yield Store("sqlite")
        return
    try:
        connection = _connect()
    except psycopg.OperationalError as error:
        message = (
            f"PostgreSQL is not reachable at {HOST}:{PORT} (database {DBNAME}, user {USER}): "
            f"{str(error).strip().splitlines()[0]}. Start it, or point OKR_TEST_POSTGRES_HOST/"
            "PORT/USER/PASSWORD/DBNAME at one."
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    try:
        yield Store("postgres", prefix)
    finally:
        with connection:
            schemas = connection.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix + "_"]
            ).fetchall()
            for (schema,) in schemas:
                connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
