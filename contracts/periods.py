"""Parsing the period an objective is time-boxed to: ``"2026"``, ``"2026-Q4"``, ``"2026-11"``
or an explicit ``{"start": date, "end": date}`` (both inclusive)."""

from __future__ import annotations

import calendar
import re
from datetime import date
from typing import Any

from contracts.goal import Cadence, Period

_YEAR = re.compile(r"^(\d{4})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def parse_period(value: str | dict[str, Any] | Period) -> Period:
    """Turn a period label or an explicit date range into a ``Period``; raises ``ValueError``."""
    if isinstance(value, Period):
        return value
    if isinstance(value, dict):
        try:
            start = date.fromisoformat(str(value["start"]))
            end = date.fromisoformat(str(value["end"]))
        except KeyError as missing:
            raise ValueError(f"a custom period needs {missing.args[0]!r}") from None
        if end < start:
            raise ValueError(f"period ends ({end}) before it starts ({start})")
        return Period(label=f"{start}..{end}", cadence=Cadence.custom, start=start, end=end)
    label = value.strip()
    if match := _YEAR.match(label):
        year = int(match[1])
        return Period(
            label=label, cadence=Cadence.annual, start=date(year, 1, 1), end=date(year, 12, 31)
        )
    if match := _QUARTER.match(label):
        year, quarter = int(match[1]), int(match[2])
        first_month = 3 * quarter - 2
        return Period(
            label=label,
            cadence=Cadence.quarterly,
            start=date(year, first_month, 1),
            end=_month_end(year, first_month + 2),
        )
    if match := _MONTH.match(label):
        year, month = int(match[1]), int(match[2])
        return Period(
            label=label,
            cadence=Cadence.monthly,
            start=date(year, month, 1),
            end=_month_end(year, month),
        )
    raise ValueError(f"unknown period {value!r}: expected YYYY, YYYY-Qn, YYYY-MM or {{start, end}}")
