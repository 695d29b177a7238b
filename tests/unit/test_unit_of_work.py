"""A policy's batch state lives in the unit of work: made once per batch on first use, typed,
and absent when ``apply`` made none."""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from services.shared.consumer import UnitOfWork


@dataclass
class Readings:
    keys: list[str] = field(default_factory=list)


@dataclass
class Definitions:
    keys: list[str] = field(default_factory=list)


def unit() -> UnitOfWork:
    return UnitOfWork(cast(Any, None))


def test_a_state_is_made_once_per_batch() -> None:
    batch = unit()
    made: list[Readings] = []

    def make() -> Readings:
        made.append(Readings())
        return made[-1]

    batch.state(Readings, make).keys.append("churn_rate")
    batch.state(Readings, make).keys.append("arr")
    assert len(made) == 1
    assert batch.state_if_any(Readings) == Readings(["churn_rate", "arr"])


def test_states_of_different_kinds_stay_apart() -> None:
    batch = unit()
    batch.state(Readings, Readings).keys.append("churn_rate")
    assert batch.state_if_any(Definitions) is None
    assert batch.state(Definitions, Definitions) == Definitions()


def test_each_batch_starts_without_state() -> None:
    first = unit()
    first.state(Readings, Readings).keys.append("churn_rate")
    assert unit().state_if_any(Readings) is None


class Folded:
    """A batch state that refers back to its unit, as alignment's does."""

    def __init__(self, unit: UnitOfWork) -> None:
        self.unit = unit


def test_leaving_a_unit_frees_its_state_without_the_cyclic_collector() -> None:
    gc.disable()
    try:
        work = unit()
        with work:
            state = weakref.ref(work.state(Folded, partial(Folded, work)))
        assert work.state_if_any(Folded) is None
        del work
        assert state() is None
    finally:
        gc.enable()
