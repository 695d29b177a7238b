"""The KPI catalogue (health, leading or lagging, latest value, a small trend line) and a
KPI's page (its readings against target and warning, the key results that address it, its
definition history)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.shared.auth import Role
from services.web.backend import UserClient
from services.web.charts import readings_chart, trend_points
from services.web.pages import AsOf, CurrentSession, Services, render

router = APIRouter(include_in_schema=False)

#: How far back the catalogue's trend lines look.
TREND_SPAN = timedelta(weeks=12)
CONCURRENT_READS = 8


def condition(kpi: dict[str, Any]) -> list[str]:
    """What the catalogue says of a KPI's health: its health, and stale or stagnant."""
    words = [kpi["health"]] if kpi.get("health") else ["no reading"]
    return words + [flag for flag in ("stale", "stagnant") if kpi.get(flag)]


async def trends(services: UserClient, keys: list[str], when: datetime | None) -> dict[str, str]:
    gate = asyncio.Semaphore(CONCURRENT_READS)
    until = when or datetime.now(UTC)

    async def trend(key: str) -> str:
        async with gate:
            readings = await services.kpi_readings(key, until - TREND_SPAN, until)
        return trend_points([reading["value"] for reading in readings])

    return dict(zip(keys, await asyncio.gather(*(trend(key) for key in keys)), strict=True))


@router.get("/kpis", response_class=HTMLResponse)
async def catalogue(
    request: Request, session: CurrentSession, services: Services, when: AsOf
) -> HTMLResponse:
    kpis = await services.kpis()
    if when is not None:
        # The catalogue as it was: each KPI then (those defined later are left out).
        then = await asyncio.gather(
            *(services.kpi(kpi["definition"]["key"], when) for kpi in kpis),
            return_exceptions=True,
        )
        kpis = [kpi for kpi in then if isinstance(kpi, dict)]
    keys = [kpi["definition"]["key"] for kpi in kpis]
    return render(
        request,
        "kpis.html",
        session,
        when,
        kpis=kpis,
        condition=condition,
        trends=await trends(services, keys, when),
    )


@router.get("/kpis/{key}", response_class=HTMLResponse)
async def kpi_page(
    request: Request, key: str, session: CurrentSession, services: Services, when: AsOf
) -> HTMLResponse:
    kpi, readings, objectives = await asyncio.gather(
        services.kpi(key, when),
        services.kpi_readings(key, None, when),
        services.objectives(status="active"),
    )
    addressed_by = [
        (objective, key_result)
        for objective in objectives
        for key_result in objective["key_results"]
        if key_result.get("kpi") == key
    ]
    history = await services.kpi_history(key) if session.may(Role.auditor) else None
    return render(
        request,
        "kpi.html",
        session,
        when,
        kpi=kpi,
        definition=kpi["definition"],
        readings=readings,
        chart=readings_chart(readings, kpi["definition"]),
        condition=condition(kpi),
        addressed_by=addressed_by,
        history=history,
    )
