"""The demo's periods follow the day it is loaded, so its OKRs stay current."""

from __future__ import annotations

from datetime import date

import pytest

from services.demo import DemoPeriods


@pytest.mark.parametrize(
    ("today", "year", "quarter", "half"),
    [
        (date(2026, 12, 3), "2026", "2026-Q4", ("2026-07-01", "2026-12-31")),
        (date(2027, 1, 1), "2027", "2027-Q1", ("2026-10-01", "2027-03-31")),
        (date(2027, 5, 31), "2027", "2027-Q2", ("2027-01-01", "2027-06-30")),
        (date(2027, 9, 30), "2027", "2027-Q3", ("2027-04-01", "2027-09-30")),
    ],
)
def test_the_demo_periods_hold_the_day_it_is_loaded(
    today: date, year: str, quarter: str, half: tuple[str, str]
) -> None:
    periods = DemoPeriods.around(today)
    assert (periods.year, periods.quarter) == (year, quarter)
    assert (periods.half["start"], periods.half["end"]) == half
    assert half[0] <= today.isoformat() <= half[1]
