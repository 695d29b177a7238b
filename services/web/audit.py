"""What auditors read: an objective's or a KPI's changes with who, when and each field
before and after, and each service's verdict on its hash-chained log."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.web.backend import SERVICES, ServiceRefused, ServiceUnavailable, UserClient
from services.web.pages import CurrentSession, Services, render

router = APIRouter(include_in_schema=False)


@router.get("/objectives/{objective_id}/history", response_class=HTMLResponse)
async def objective_history(
    request: Request, objective_id: str, session: CurrentSession, services: Services
) -> HTMLResponse:
    entries, view = await asyncio.gather(
        services.objective_history(objective_id), services.objective(objective_id, None)
    )
    return render(
        request,
        "history.html",
        session,
        subject=view["objective"]["title"],
        back=f"/objectives/{objective_id}",
        entries=entries,
    )


@router.get("/kpis/{key}/history", response_class=HTMLResponse)
async def kpi_history(
    request: Request, key: str, session: CurrentSession, services: Services
) -> HTMLResponse:
    entries = await services.kpi_history(key)
    return render(
        request, "history.html", session, subject=key, back=f"/kpis/{key}", entries=entries
    )


async def verdict(services: UserClient, service: Any) -> dict[str, Any]:
    """A service's verdict, or why there is none (a refusal, or no answer)."""
    try:
        return await services.audit_verify(service)
    except ServiceRefused as refused:
        return {"service": service, "ok": None, "reason": f"{refused.status}: {refused.message}"}
    except ServiceUnavailable:
        return {"service": service, "ok": None, "reason": "the service does not answer"}


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request, session: CurrentSession, services: Services) -> HTMLResponse:
    verdicts = await asyncio.gather(*(verdict(services, name) for name in SERVICES))
    return render(
        request, "audit.html", session, verdicts=list(zip(SERVICES, verdicts, strict=True))
    )
