"""A handled batch's offsets are committed in an empty context: asyncio keeps a cancelled
timer (the commit's request timeout) with the context it was made in until it would have
fired, and FastStream's context holds the whole batch."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, cast

from services.shared.runtime import _commit

BATCH: contextvars.ContextVar[list[bytes]] = contextvars.ContextVar("batch")


class Message:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.seen: list[list[bytes] | None] = []

    async def ack(self) -> None:
        self.seen.append(BATCH.get(None))
        # What a commit does: wait with a timeout, a timer in the loop.
        await asyncio.wait_for(asyncio.sleep(0), timeout=40)
        if self.fails:
            raise RuntimeError("the group rebalanced")


def test_the_commit_sees_no_batch() -> None:
    async def handle() -> Message:
        BATCH.set([b"reading"] * 10)
        message = Message()
        await _commit(cast(Any, message))
        return message

    assert asyncio.run(handle()).seen == [None]


def test_a_failed_commit_is_logged_not_raised() -> None:
    async def handle() -> Message:
        message = Message(fails=True)
        await _commit(cast(Any, message))
        return message

    assert asyncio.run(handle()).seen == [None]
