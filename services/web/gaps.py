"""Open gaps, grouped by kind and owner, each with what to do about it."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.web.pages import AsOf, CurrentSession, Services, render

router = APIRouter(include_in_schema=False)


def grouped(gaps: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, list[dict[str, Any]]]]]]:
    """Gaps by kind, then by owner (no owner last), in a stable order."""

    def kind(gap: dict[str, Any]) -> str:
        return str(gap["kind"])

    def owner(gap: dict[str, Any]) -> str:
        return str(gap.get("owner") or "")

    ordered = sorted(gaps, key=lambda gap: (kind(gap), owner(gap) == "", owner(gap), gap["gap_id"]))
    return [
        (name, [(who, list(mine)) for who, mine in groupby(of_kind, key=owner)])
        for name, of_kind in groupby(ordered, key=kind)
    ]


@router.get("/gaps", response_class=HTMLResponse)
async def gaps_page(
    request: Request, session: CurrentSession, services: Services, when: AsOf
) -> HTMLResponse:
    found = await services.gaps(when)
    return render(request, "gaps.html", session, when, groups=grouped(found), count=len(found))
