"""Fixtures and settings shared by all test layers."""

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.postgres_server import PostgresServer
from tests.stores import Store, open_store, serve_postgres
from tests.support import stop_leftovers

# Services built in the tests' own process serve without tokens, unless a test gives some
# (tests/integration/test_auth.py); in production a service without tokens refuses to start.
os.environ.setdefault("OKR_AUTH_DISABLED", "true")

# Hypothesis's per-example deadline (200 ms) fails properties on a loaded 2-core CI machine
# for reasons that are not the property's; every property still runs its examples.
settings.register_profile("okr", deadline=None)
settings.load_profile("okr")


@pytest.fixture(scope="session", autouse=True)
def no_service_left_running() -> Iterator[None]:
    """A fixture that forgets to stop a service leaves it loading the machine for the rest
    of the session (and after): stop it, and fail, naming it."""
    yield
    leftovers = stop_leftovers()
    assert not leftovers, f"tests left service processes running: {leftovers}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The tests' PostgreSQL, started when a test first takes the postgres store."""
    yield from serve_postgres()


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """SQLite, unless the test is marked ``@both_stores`` (then SQLite, and PostgreSQL)."""
    kind = getattr(request, "param", "sqlite")
    server = request.getfixturevalue("postgres_server") if kind == "postgres" else None
    yield from open_store(kind, server)
