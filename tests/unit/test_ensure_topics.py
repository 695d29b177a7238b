"""Creating the topics rides out a broker that has just started and refuses for a moment,
and gives up at once on what waiting cannot fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import NodeNotReadyError, TopicAuthorizationFailedError

from services.shared import broker


def attempts(monkeypatch: pytest.MonkeyPatch, *outcomes: Exception | list[str]) -> list[int]:
    """Make each attempt to create the topics end as the next of ``outcomes`` (a list: the
    topics it created)."""
    made: list[int] = []

    async def create(client_options: dict[str, Any], created: list[str]) -> None:
        outcome = outcomes[len(made)]
        made.append(1)
        if isinstance(outcome, Exception):
            raise outcome
        created += outcome

    async def no_wait(seconds: float) -> None:
        pass

    monkeypatch.setattr(broker, "_create_missing_topics", create)
    monkeypatch.setattr(asyncio, "sleep", no_wait)
    return made


def test_a_broker_not_ready_yet_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    made = attempts(monkeypatch, NodeNotReadyError("node 1"), ["kpi.readings"])
    assert asyncio.run(broker.ensure_topics({})) == ["kpi.readings"]
    assert len(made) == 2


def test_what_waiting_cannot_fix_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made = attempts(monkeypatch, TopicAuthorizationFailedError("kpi.readings"), [])
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(broker.ensure_topics({}))
    assert len(made) == 1


def test_a_broker_that_never_gets_ready_fails_after_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts(monkeypatch, NodeNotReadyError("node 1"))
    with pytest.raises(NodeNotReadyError):
        asyncio.run(broker.ensure_topics({}, within=-1))
