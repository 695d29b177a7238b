"""The figures behind the charts: series for uPlot (drawn by static/console.js from JSON on
the page, the same figures in a table beside it for reading without JavaScript), and the
points of the KPI catalogue's small trend lines, drawn as SVG on the server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

#: The trend line's box, in SVG units.
TREND_WIDTH, TREND_HEIGHT = 120.0, 28.0


class Line(TypedDict, total=False):
    label: str
    values: list[float | None]
    dashed: bool
    colour: str


class Chart(TypedDict):
    x: list[float]
    series: list[Line]
    unit: str


def seconds(instant: str | datetime) -> float:
    moment = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    return moment.timestamp()


def score_chart(scores: Sequence[dict[str, Any]]) -> Chart:
    """A key result's score over time, in percent, with the progress expected by then."""
    return {
        "x": [seconds(entry["as_of"]) for entry in scores],
        "series": [
            {"label": "score %", "values": [round(entry["score"] * 100, 1) for entry in scores]},
            {
                "label": "expected pace %",
                "values": [round(entry["expected"] * 100, 1) for entry in scores],
                "dashed": True,
                "colour": "#5d5d63",
            },
        ],
        "unit": "%",
    }


def readings_chart(readings: Sequence[dict[str, Any]], definition: dict[str, Any]) -> Chart:
    """A KPI's readings by observed time, with its target and warning threshold as lines."""
    count = len(readings)
    series: list[Line] = [
        {"label": definition["name"], "values": [reading["value"] for reading in readings]},
        {
            "label": "target",
            "values": [definition["target"]] * count,
            "dashed": True,
            "colour": "#2e6b30",
        },
    ]
    if definition.get("warning") is not None:
        series.append(
            {
                "label": "warning",
                "values": [definition["warning"]] * count,
                "dashed": True,
                "colour": "#8a5a00",
            }
        )
    return {
        "x": [seconds(reading["observed_at"]) for reading in readings],
        "series": series,
        "unit": definition.get("unit") or "",
    }


def trend_points(values: Sequence[float]) -> str:
    """An SVG polyline's points for ``values``, scaled to the trend box (flat when equal)."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = TREND_WIDTH / (len(values) - 1)
    return " ".join(
        f"{index * step:.1f},{TREND_HEIGHT - 2 - (value - low) / span * (TREND_HEIGHT - 4):.1f}"
        for index, value in enumerate(values)
    )
