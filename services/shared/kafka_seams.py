"""Where the services change how ``aiokafka`` works inside: every override of one of the
library's private methods is here and nowhere else (the long polling for noida-db, confined to
that broker, lives in ``long_poll``). Each relies on how the pinned version (pyproject.toml)
works inside, as its docstring says; ``tests/unit/test_kafka_seams.py`` fails when an upgrade
changes that, and ``tests/integration/test_kafka_seams.py`` shows the broker behaviour each one
guards against.
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.commit import OffsetCommitRequest

__all__ = ["install"]

_library_commit = GroupCoordinator._do_commit_offsets


async def _commit_as_a_member(self: Any, assignment: Any, offsets: Any) -> None:
    """Commit offsets only as a member of the group, never with "no generation".

    When a commit or a heartbeat finds the group changed, aiokafka forgets its generation and
    rejoins; a commit sent meanwhile goes out with generation -1, which Kafka takes for a
    consumer outside group management and accepts whenever the group is empty or unknown. A
    broker that lost its data knows no group: that commit then stores the positions the
    consumer had in the lost log, the rejoin resumes from them in the new log, and the
    records before them are never read. Kafka's Java consumer refuses such a commit; so does
    this. The refusal is a failed commit (the batch comes again after the rejoin, and tracking
    skips what was applied).

    Relies on ``_do_commit_offsets`` reading ``self.generation`` before its first await (so
    nothing changes it between this check and the request), on ``self._subscription`` being
    the consumer's subscription state, and on ``commit_offsets`` turning
    ``IllegalGenerationError`` into ``CommitFailedError`` without retrying.
    """
    if (
        self.generation == OffsetCommitRequest.DEFAULT_GENERATION_ID
        and self._subscription.partitions_auto_assigned()
    ):
        raise errors.IllegalGenerationError(
            f"not committing for group {self.group_id}: rejoining it, no generation"
        )
    await _library_commit(self, assignment, offsets)


def install() -> None:
    """Apply the seams to every consumer of the process (once is enough; again is harmless)."""
    GroupCoordinator._do_commit_offsets = _commit_as_a_member
