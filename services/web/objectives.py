"""An objective's page (key results, check-ins, hygiene warnings, parent and children), its
check-in, edit and archive forms, and the new-objective form."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.shared.auth import Role
from services.web import forms
from services.web.backend import ServiceRefused, UserClient
from services.web.pages import AsOf, CheckedForm, CurrentSession, Services, render
from services.web.sessions import Session

router = APIRouter(include_in_schema=False)

OPTIONS = {
    "level": ("company", "department", "team", "individual"),
    "type": ("committed", "aspirational"),
    "kind": ("metric", "kpi", "milestone", "rollup"),
    "aggregation": ("latest", "sum", "avg", "min", "max", "count"),
}


async def optional(read: Any) -> Any:
    """An answer that may not exist yet (alignment scores an objective moments after it is
    set): None for a 404."""
    try:
        return await read
    except ServiceRefused as refused:
        if refused.status == 404:
            return None
        raise


async def objective_context(
    services: UserClient, objective_id: str, when: datetime | None
) -> dict[str, Any]:
    view = await services.objective(objective_id, when)
    score, open_gaps, everyone = await asyncio.gather(
        optional(services.objective_score(objective_id, when)),
        services.gaps(when),
        services.objectives(),
    )
    key_result_ids = {kr["id"] for kr in view["key_results"]}
    scored = {kr["id"]: kr for kr in (score or {}).get("key_results", [])}
    parent_id = view["objective"].get("parent_id")
    return {
        "view": view,
        "objective": view["objective"],
        "score": score,
        "scored": scored,
        "hygiene": [gap for gap in open_gaps if gap["subject"] in key_result_ids | {objective_id}],
        "parent": next((o for o in everyone if o["id"] == parent_id), None),
        "children": [o for o in everyone if o.get("parent_id") == objective_id],
    }


async def objective_page(
    request: Request,
    session: Session,
    services: UserClient,
    objective_id: str,
    when: datetime | None = None,
    status_code: int = 200,
    **extra: Any,
) -> HTMLResponse:
    context = await objective_context(services, objective_id, when)
    return render(
        request, "objective.html", session, when, status_code=status_code, **context, **extra
    )


@router.get("/objectives/new", response_class=HTMLResponse)
async def new_objective_form(
    request: Request, session: CurrentSession, services: Services, kpi: str | None = None
) -> Response:
    values: forms.Values = {"level": "team", "type": "committed", "period": current_quarter()}
    if kpi:
        values |= await kpi_key_result(services, kpi)
    return await form_page(request, session, services, values, 3, "new")


@router.post("/objectives/new", response_class=HTMLResponse)
async def new_objective(
    request: Request, session: CurrentSession, services: Services, form: CheckedForm
) -> Response:
    values, rows = forms.read(form)
    body, origins = forms.objective_body(values, rows)
    action = values.get("action", "save")
    if action != "save":
        return await form_page(request, session, services, values, rows, "new", action=action)
    try:
        created = await services.create_objective(body)
    except ServiceRefused as refused:
        if refused.status != 422:
            raise
        errors, general = forms.field_errors(refused.detail, forms.form_fields(rows), origins)
        return await form_page(
            request, session, services, values, rows, "new", errors=errors, general=general
        )
    session.notices.extend(created.get("warnings", []))
    return RedirectResponse(f"/objectives/{created['objective']['id']}", status_code=303)


@router.get("/objectives/{objective_id}", response_class=HTMLResponse)
async def objective(
    request: Request, objective_id: str, session: CurrentSession, services: Services, when: AsOf
) -> Response:
    return await objective_page(request, session, services, objective_id, when)


@router.get("/objectives/{objective_id}/edit", response_class=HTMLResponse)
async def edit_objective_form(
    request: Request, objective_id: str, session: CurrentSession, services: Services
) -> Response:
    values, rows = forms.from_objective(await services.objective(objective_id, None))
    return await form_page(request, session, services, values, rows, "edit", objective_id)


@router.post("/objectives/{objective_id}/edit", response_class=HTMLResponse)
async def edit_objective(
    request: Request,
    objective_id: str,
    session: CurrentSession,
    services: Services,
    form: CheckedForm,
) -> Response:
    values, rows = forms.read(form)
    body, origins = forms.objective_body(values, rows)
    action = values.get("action", "save")
    if action != "save":
        return await form_page(
            request, session, services, values, rows, "edit", objective_id, action=action
        )
    try:
        changed = await services.redefine_objective(objective_id, body)
    except ServiceRefused as refused:
        if refused.status != 422:
            raise
        errors, general = forms.field_errors(refused.detail, forms.form_fields(rows), origins)
        return await form_page(
            request, session, services, values, rows, "edit", objective_id, errors, general
        )
    session.notices.extend(changed.get("warnings", []))
    return RedirectResponse(f"/objectives/{objective_id}", status_code=303)


@router.post("/objectives/{objective_id}/archive")
async def archive(
    objective_id: str, services: Services, form: CheckedForm, session: CurrentSession
) -> Response:
    reason = form.get("reason")
    await services.archive_objective(
        objective_id, reason.strip() or None if isinstance(reason, str) else None
    )
    session.notices.append("The objective is archived.")
    return RedirectResponse(f"/objectives/{objective_id}", status_code=303)


@router.post("/objectives/{objective_id}/key-results/{key_result_id}/check-ins")
async def check_in(
    request: Request,
    objective_id: str,
    key_result_id: str,
    session: CurrentSession,
    services: Services,
    form: CheckedForm,
) -> Response:
    values, _ = forms.read(form)
    view = await services.objective(objective_id, None)
    key_result = next((kr for kr in view["key_results"] if kr["id"] == key_result_id), None)
    if key_result is None:
        raise ServiceRefused("goal", 404, f"no key result {key_result_id} in this objective")
    body = forms.check_in_body(values, key_result["kind"], key_result.get("checklist") or [])
    try:
        await services.check_in(objective_id, key_result_id, body)
    except ServiceRefused as refused:
        if refused.status != 422:
            raise
        errors, general = forms.field_errors(refused.detail, {"value", "confidence", "comment"})
        return await objective_page(
            request,
            session,
            services,
            objective_id,
            status_code=422,
            check_in_for=key_result_id,
            check_in_errors=errors,
            check_in_general=general,
            check_in_values=values,
        )
    session.notices.append(f"Checked in on “{key_result['title']}”.")
    return RedirectResponse(f"/objectives/{objective_id}#kr-{key_result_id}", status_code=303)


def current_quarter() -> str:
    today = datetime.now(UTC).date()
    return f"{today.year}-Q{(today.month - 1) // 3 + 1}"


async def kpi_key_result(services: UserClient, key: str) -> forms.Values:
    """A ``kpi`` key result that puts the KPI on its target: the seed of an OKR for a KPI
    that no key result addresses yet."""
    kpi = await services.kpi(key, None)
    definition = kpi["definition"]
    unit = definition.get("unit") or ""
    return {
        "owner": definition.get("owner") or "",
        "title": f"Bring {definition['name']} on target",
        "key_results.0.title": f"{definition['name']}: reach {definition['target']:g} {unit}",
        "key_results.0.kind": "kpi",
        "key_results.0.kpi": key,
        "key_results.0.aggregation": "latest",
        "key_results.0.baseline": "" if kpi.get("value") is None else f"{kpi['value']:g}",
        "key_results.0.target": f"{definition['target']:g}",
        "key_results.0.unit": unit,
    }


async def form_page(
    request: Request,
    session: Session,
    services: UserClient,
    values: forms.Values,
    rows: int,
    mode: str,
    objective_id: str | None = None,
    errors: dict[str, list[str]] | None = None,
    general: list[str] | None = None,
    action: str = "save",
) -> HTMLResponse:
    """The new or edit form; with ``action`` ``add`` one more key result row, with ``check``
    the hygiene warnings (also shown beside the errors of a refused save)."""
    if not session.may(Role.writer):
        message = "Changing objectives needs a token with the role writer."
        return render(request, "problem.html", session, status_code=403, message=message)
    rows = max(rows + (action == "add"), 1)
    body, _ = forms.objective_body(values, rows)
    everyone, kpis = await asyncio.gather(services.objectives(status="active"), services.kpis())
    label = (
        body["period"] if isinstance(body["period"], str) else "..".join(body["period"].values())
    )
    owners = sum(
        o["owner"] == body["owner"] and o["period"]["label"] == label and o["id"] != objective_id
        for o in everyone
    )
    warnings = forms.hygiene(body, owners) if action == "check" or errors else []
    return render(
        request,
        "objective_form.html",
        session,
        None,
        status_code=422 if errors else 200,
        mode=mode,
        objective_id=objective_id,
        values=values,
        rows=rows,
        errors=errors or {},
        general=general or [],
        warnings=warnings,
        options=OPTIONS,
        parents=[o for o in everyone if o["id"] != objective_id],
        kpis=kpis,
    )
