"""A key result's page: its score over time against the expected pace, the readings of its
KPI in the objective's period against the KPI's target and warning, and the lineage of its
current score."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.web.backend import ServiceRefused, UserClient
from services.web.charts import readings_chart, score_chart, seconds
from services.web.objectives import optional
from services.web.pages import AsOf, CurrentSession, Services, render

router = APIRouter(include_in_schema=False)


def period_bounds(period: dict[str, Any], when: datetime | None) -> tuple[datetime, datetime]:
    """The objective's period as instants: from its first day to the end of its last (or
    the instant looked at, if earlier)."""
    start = datetime.combine(date.fromisoformat(period["start"]), time(), UTC)
    end = datetime.combine(date.fromisoformat(period["end"]), time(), UTC) + timedelta(days=1)
    return start, min(end, when) if when else end


async def kpi_figures(
    services: UserClient, key_result: dict[str, Any], period: dict[str, Any], when: datetime | None
) -> dict[str, Any] | None:
    """The linked KPI and its readings in the period, for a ``kpi`` key result."""
    if key_result["kind"] != "kpi" or not key_result.get("kpi"):
        return None
    since, until = period_bounds(period, when)
    try:
        kpi, readings = await asyncio.gather(
            services.kpi(key_result["kpi"], when),
            services.kpi_readings(key_result["kpi"], since, until),
        )
    except ServiceRefused as refused:
        if refused.status == 404:
            return {"missing": True}
        raise
    return {
        "kpi": kpi,
        "readings": readings,
        "chart": readings_chart(readings, kpi["definition"]),
    }


@router.get("/objectives/{objective_id}/key-results/{key_result_id}", response_class=HTMLResponse)
async def key_result(
    request: Request,
    objective_id: str,
    key_result_id: str,
    session: CurrentSession,
    services: Services,
    when: AsOf,
) -> HTMLResponse:
    view, score, scores = await asyncio.gather(
        services.objective(objective_id, when),
        optional(services.objective_score(objective_id, when)),
        optional(services.key_result_scores(key_result_id)),
    )
    definition = next((kr for kr in view["key_results"] if kr["id"] == key_result_id), None)
    if definition is None:
        raise ServiceRefused("goal", 404, f"no key result {key_result_id} in this objective")
    history = [
        entry
        for entry in scores or []
        if when is None or seconds(entry["as_of"]) <= when.timestamp()
    ]
    current: dict[str, Any] = next(
        (kr for kr in (score or {}).get("key_results", []) if kr["id"] == key_result_id), {}
    )
    kpi = await kpi_figures(services, definition, view["objective"]["period"], when)
    return render(
        request,
        "key_result.html",
        session,
        when,
        objective=view["objective"],
        key_result=definition,
        current=current,
        history=history,
        score_chart=score_chart(history),
        kpi=kpi,
    )
