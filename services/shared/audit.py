"""The tamper-evident log: every stored event is chained to its predecessor by a hash.

``link(previous, event)`` covers the event's identity (aggregate, version, type), its content
and the hash before it, so altering, removing or reordering any stored event breaks the chain
from that position on. The chain's head is also published (``audit.heads``), which catches
the one change a chain alone cannot: removing the last events together with their links.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The hash before the first event.
GENESIS = "0" * 64


def link(previous: str, originator_id: str, version: int, topic: str, state: bytes | str) -> str:
    """The chain hash of one stored event after ``previous``. A state rewritten as text (as
    a hand-edited row may be) hashes by its UTF-8 bytes: the content decides, not the type."""
    if isinstance(state, str):
        state = state.encode()
    digest = hashlib.sha256()
    for part in (previous, originator_id, str(version), topic):
        digest.update(part.encode())
        digest.update(b"\x00")  # separators: "ab"+"c" must not equal "a"+"bc"
    digest.update(hashlib.sha256(state).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class Verdict:
    """What verifying a log found: ``broken_at`` is the first position that does not hold."""

    ok: bool
    checked: int
    head_position: int
    head_hash: str
    broken_at: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head_position": self.head_position,
            "head_hash": self.head_hash,
            "broken_at": self.broken_at,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class StoredLink:
    """One stored event joined with its recorded link (either side may be missing)."""

    position: int
    originator_id: str | None
    version: int | None
    topic: str | None
    state: bytes | str | None
    recorded_hash: str | None


def verify(rows: Iterable[StoredLink], published_head: tuple[int, str] | None = None) -> Verdict:
    """Walk the log in position order, recomputing the chain; compare the end with the head
    published to Kafka (when there is one)."""
    previous, checked, position = GENESIS, 0, 0
    head_position, head_hash = published_head or (0, GENESIS)

    def broken(at: int, reason: str) -> Verdict:
        return Verdict(False, checked, position, previous, at, reason)

    for row in rows:
        position = row.position
        if row.state is None or row.originator_id is None or row.topic is None:
            return broken(position, "an event was removed: its link remains")
        if row.recorded_hash is None:
            return broken(
                position, "an event has no link: inserted outside the store, or its link removed"
            )
        expected = link(previous, row.originator_id, row.version or 0, row.topic, row.state)
        if expected != row.recorded_hash:
            return broken(position, "an event was altered, or events were reordered")
        previous = expected
        checked += 1
        if position == head_position and expected != head_hash:
            return broken(position, "the log differs from the head published at this position")
    if head_position > position:
        return broken(
            position + 1,
            f"the log ends at {position} but a head at {head_position} was published: "
            "events were removed from its end",
        )
    return Verdict(True, checked, position, previous)
