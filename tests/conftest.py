"""Fixtures and settings shared by all test layers."""

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from services.shared import long_poll
from tests.stores import Store, open_store

# Services built in the tests' own process serve without tokens, unless a test gives some
# (tests/integration/test_auth.py); in production a service without tokens refuses to start.
os.environ.setdefault("OKR_AUTH_DISABLED", "true")

# The tests' own Kafka clients long-poll too (the services do): on noida-db an idle consumer
# would otherwise spin, taking CPU from the services under test.
long_poll.install()

# Hypothesis's per-example deadline (200 ms) fails properties on a loaded 2-core CI machine
# for reasons that are not the property's; every property still runs its examples.
settings.register_profile("okr", deadline=None)
settings.load_profile("okr")


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """SQLite, unless the test is marked ``@both_stores`` (then SQLite, and PostgreSQL)."""
    yield from open_store(getattr(request, "param", "sqlite"))
