"""Encryption at rest (``OKR_CIPHER_KEY``): events and snapshots reach the database only as
AES-GCM ciphertext, the service reads them back with the key, and without it nothing reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import MapperDeserialisationError
from pydantic import SecretStr

from services.goal.application import GoalApplication
from services.shared.audit import verify
from services.shared.settings import Settings
from services.shared.store import store_environment
from tests.stores import Store, both_stores
from tests.unit.test_goal_application import chatbot_command

pytestmark = pytest.mark.integration

TITLE = "Become the #1 provider of AI-powered chatbots"


def settings(store: Store, tmp_path: Path, key: str | None) -> Settings:
    return store.settings("goal", tmp_path, cipher_key=None if key is None else SecretStr(key))


@both_stores
def test_stored_events_are_ciphertext_and_read_back_with_the_key(
    store: Store, tmp_path: Path
) -> None:
    key = AESCipher.create_key(32)
    application = GoalApplication(env=store_environment(settings(store, tmp_path, key)))
    objective, _ = application.create_objective(chatbot_command(), "ceo")
    links = application.tracking_recorder.select_links()
    application.close()

    stored = [row.state for row in links if isinstance(row.state, bytes)]
    assert stored, "something was stored"
    assert all(TITLE.encode() not in state and b"chatbot" not in state for state in stored)
    assert verify(links).ok  # the chain covers the stored (encrypted) bytes

    reopened = GoalApplication(env=store_environment(settings(store, tmp_path, key)))
    assert reopened.get_objective(objective.id).definition.title == TITLE
    reopened.close()

    # The goal service reads its catalogue at start: with another key it cannot even start.
    with pytest.raises(MapperDeserialisationError, match="MAC check failed"):
        GoalApplication(env=store_environment(settings(store, tmp_path, AESCipher.create_key(32))))


def test_without_a_key_events_are_stored_readable(tmp_path: Path) -> None:
    """The default: plain JSON, so the contrast above means something."""
    application = GoalApplication(env=store_environment(settings(Store("sqlite"), tmp_path, None)))
    application.create_objective(chatbot_command(), "ceo")
    states = [row.state for row in application.tracking_recorder.select_links()]
    application.close()
    assert any(isinstance(state, bytes) and TITLE.encode() in state for state in states)


def test_an_empty_key_means_no_encryption() -> None:
    """Compose passes ``OKR_CIPHER_KEY=`` through when .env leaves it empty."""
    assert Settings(cipher_key="").cipher_key is None
