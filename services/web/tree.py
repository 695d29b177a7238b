"""The OKR tree: the cascade with scores, pace and confidence, filtered; and the fragment of
one objective that the live feed makes a page fetch again. The alignment service's answers
carry each key result's confidence, so a page costs the same few calls however large the
tree."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.web.pages import AsOf, CurrentSession, Services, render

router = APIRouter(include_in_schema=False)

LEVELS = ("company", "department", "team", "individual")

Node = dict[str, Any]


def pruned(nodes: list[Node], keep: Callable[[Node], bool]) -> list[Node]:
    """The nodes ``keep`` accepts, each with its kept descendants; a node left out leaves its
    kept children in its place, so a filter never hides a match."""
    kept: list[Node] = []
    for node in nodes:
        children = pruned(node.get("children", []), keep)
        if keep(node):
            kept.append(node | {"children": children})
        else:
            kept.extend(children)
    return kept


def choices(objectives: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The values each filter can take, from the objectives there are."""
    return {
        "period": sorted({o["period"]["label"] for o in objectives}),
        "org_unit": sorted({o["org_unit"] for o in objectives}),
        "owner": sorted({o["owner"] for o in objectives if o["owner"]}),
        "level": [level for level in LEVELS if any(o["level"] == level for o in objectives)],
    }


@router.get("/", response_class=HTMLResponse)
async def tree_page(
    request: Request,
    session: CurrentSession,
    services: Services,
    when: AsOf,
    period: str | None = None,
    org_unit: str | None = None,
    owner: str | None = None,
    level: str | None = None,
    archived: bool = False,
) -> HTMLResponse:
    cascade, objectives = await asyncio.gather(
        services.tree(period or None, org_unit or None, when), services.objectives()
    )
    roots = pruned(
        cascade,
        lambda node: (
            (not owner or node["owner"] == owner) and (not level or node["level"] == level)
        ),
    )
    shelved = [
        o
        for o in objectives
        if archived
        and o["status"] == "archived"
        and (not period or o["period"]["label"] == period)
        and (not org_unit or o["org_unit"] == org_unit)
        and (not owner or o["owner"] == owner)
        and (not level or o["level"] == level)
    ]
    return render(
        request,
        "tree.html",
        session,
        when,
        roots=roots,
        archived_objectives=shelved,
        choices=choices(objectives),
        chosen={
            "period": period,
            "org_unit": org_unit,
            "owner": owner,
            "level": level,
            "archived": archived,
        },
    )


@router.get("/fragments/objectives/{objective_id}", response_class=HTMLResponse)
async def objective_fragment(
    request: Request, objective_id: str, session: CurrentSession, services: Services
) -> HTMLResponse:
    """One objective's line and key results as they are now: what a live event re-fetches."""
    node = await services.objective_score(objective_id, None)
    return render(request, "_objective.html", session, None, node=node)
