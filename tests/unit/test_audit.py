"""The tamper-evident log: altering, removing or reordering stored events is detected, with
the first broken position; an untouched store verifies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from services.goal.application import GoalApplication
from services.goal.commands import KeyResultCommand, ObjectiveCommand
from services.shared.audit import GENESIS, StoredLink, link, verify
from services.shared.settings import Settings
from services.shared.store import ServiceApplication, store_environment


def objective(title: str) -> ObjectiveCommand:
    return ObjectiveCommand(
        title=title,
        owner="dana.ceo",
        org_unit="company",
        level="company",
        period="2026",
        key_results=[
            KeyResultCommand(
                title="Onboard 300 new customers", kind="metric", baseline=0, target=300
            )
        ],
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A goal store with five events (positions 1 to 5)."""
    settings = Settings(service="goal", data_dir=tmp_path)
    application = GoalApplication(env=store_environment(settings))
    for n in range(5):
        application.create_objective(objective(f"Objective {n}"), actor="dana.ceo")
    application.close()
    return tmp_path / "goal.sqlite"


def opened(path: Path) -> ServiceApplication:
    """The store alone, as the verifier reads it (no projection replayed from it)."""
    return ServiceApplication(env=store_environment(Settings(service="goal", data_dir=path.parent)))


def verdict(path: Path, published: tuple[int, str] | None = None) -> dict[str, object]:
    application = opened(path)
    try:
        return verify(application.tracking_recorder.select_links(), published).as_dict()
    finally:
        application.close()


def tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)


def test_an_untouched_store_verifies(store: Path) -> None:
    found = verdict(store)
    assert found["ok"] is True
    assert (found["checked"], found["head_position"]) == (5, 5)


def test_an_altered_event_is_detected_at_its_position(store: Path) -> None:
    tamper(
        store,
        "UPDATE stored_events SET state = replace(state, 'Objective 2', 'Objective X') "
        "WHERE rowid = 3",
    )
    found = verdict(store)
    assert (found["ok"], found["broken_at"]) == (False, 3)
    assert "altered" in str(found["reason"])


def test_a_removed_event_is_detected(store: Path) -> None:
    tamper(store, "DELETE FROM stored_events WHERE rowid = 2")
    found = verdict(store)
    assert (found["ok"], found["broken_at"]) == (False, 2)
    assert "removed" in str(found["reason"])


def test_reordered_events_are_detected(store: Path) -> None:
    tamper(
        store,
        "UPDATE stored_events SET rowid = 100 WHERE rowid = 2",
        "UPDATE stored_events SET rowid = 2 WHERE rowid = 4",
        "UPDATE stored_events SET rowid = 4 WHERE rowid = 100",
    )
    found = verdict(store)
    assert (found["ok"], found["broken_at"]) == (False, 2)


def test_removing_the_last_event_with_its_link_is_caught_by_the_published_head(
    store: Path,
) -> None:
    head = verdict(store)
    published = (int(str(head["head_position"])), str(head["head_hash"]))
    tamper(
        store,
        "DELETE FROM stored_events WHERE rowid = 5",
        "DELETE FROM audit_chain WHERE position = 5",
    )
    assert verdict(store)["ok"] is True  # the chain alone cannot see it
    found = verdict(store, published)
    assert (found["ok"], found["broken_at"]) == (False, 5)
    assert "removed from its end" in str(found["reason"])


def test_a_rewritten_chain_differs_from_the_published_head(store: Path) -> None:
    head = verdict(store)
    published = (int(str(head["head_position"])), str(head["head_hash"]))
    # Alter an event and recompute every link after it: consistent, but not what was published.
    application = opened(store)
    rows = application.tracking_recorder.select_links()
    application.close()
    previous, links = GENESIS, []
    for row in rows:
        assert isinstance(row.state, bytes)
        state = row.state.replace(b"Objective 1", b"Objective Y")
        previous = link(previous, str(row.originator_id), row.version or 0, str(row.topic), state)
        links.append((row.position, state, previous))
    with sqlite3.connect(store) as connection:
        for position, state, chained in links:
            connection.execute(
                "UPDATE stored_events SET state = ? WHERE rowid = ?", (state, position)
            )
            connection.execute(
                "UPDATE audit_chain SET hash = ? WHERE position = ?", (chained, position)
            )
    found = verdict(store, published)
    assert (found["ok"], found["broken_at"]) == (False, 5)


def test_verify_names_an_event_without_link() -> None:
    first = link(GENESIS, "a", 1, "t", b"{}")
    rows = [StoredLink(1, "a", 1, "t", b"{}", first), StoredLink(2, "b", 1, "t", b"{}", None)]
    found = verify(rows)
    assert (found.ok, found.broken_at, found.checked) == (False, 2, 1)
