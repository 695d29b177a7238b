"""Objective and check-in forms: what a form shows, the API body it becomes, the API's field
errors put back next to the fields, and the hygiene warnings shown before saving.

A form field is named by its path in the API body (``key_results.1.target``), so an error's
``loc`` names the field it belongs to. Values go to the API as typed: it is the one judge of
what is valid, and a word in a number field comes back as that field's error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData

#: Objectives' fields as the form shows them, in order.
OBJECTIVE_FIELDS = (
    "title",
    "description",
    "owner",
    "contributors",
    "org_unit",
    "level",
    "period",
    "type",
    "weight",
    "parent",
)
KEY_RESULT_FIELDS = (
    "id",
    "title",
    "kind",
    "unit",
    "baseline",
    "target",
    "weight",
    "kpi",
    "aggregation",
    "checklist",
)
NUMBERS = {"weight", "baseline", "target"}
#: Focus: fewer than this many key results, or more than the most, earns a warning.
FEWEST_KEY_RESULTS, MOST_KEY_RESULTS = 3, 5
#: Active objectives one owner should have in one period, at most.
MOST_OBJECTIVES = 5

Values = dict[str, str]


def number(text: str) -> float | str:
    """A number when the text is one; else the text itself, for the API to refuse by name."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return text


def read(form: FormData) -> tuple[Values, int]:
    """The form's values (text only) and how many key result rows it has."""
    values = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    rows = 0
    while any(f"key_results.{rows}.{name}" in values for name in KEY_RESULT_FIELDS):
        rows += 1
    return values, rows


def key_result_body(values: Values, row: int) -> dict[str, Any] | None:
    """One key result row as the API takes it; None for a row marked to drop or left blank."""
    field = {
        name: values.get(f"key_results.{row}.{name}", "").strip() for name in KEY_RESULT_FIELDS
    }
    if values.get(f"key_results.{row}.drop") or not any(
        field[name] for name in ("title", "baseline", "target", "kpi")
    ):
        return None
    body: dict[str, Any] = {"title": field["title"], "kind": field["kind"]}
    for name in ("id", "unit", "kpi", "aggregation"):
        if field[name]:
            body[name] = field[name]
    for name in ("baseline", "target", "weight"):
        if field[name]:
            body[name] = number(field[name])
    checklist = [line.strip() for line in field["checklist"].splitlines() if line.strip()]
    if checklist:
        body["checklist"] = checklist
    return body


def objective_body(values: Values, rows: int) -> tuple[dict[str, Any], list[int]]:
    """The API body, and for each key result in it the form row it came from (to place the
    API's errors, which count the key results sent)."""
    body: dict[str, Any] = {
        name: values.get(name, "").strip()
        for name in ("title", "description", "owner", "org_unit", "level", "type")
    }
    period = values.get("period", "").strip()
    start, separator, end = period.partition("..")
    body["period"] = {"start": start, "end": end} if separator else period
    body["contributors"] = [
        name.strip() for name in values.get("contributors", "").split(",") if name.strip()
    ]
    if values.get("weight", "").strip():
        body["weight"] = number(values["weight"].strip())
    parent, _, parent_key_result = values.get("parent", "").partition(":")
    body["parent_id"] = parent or None
    body["parent_key_result_id"] = parent_key_result or None
    key_results, origins = [], []
    for row in range(rows):
        key_result = key_result_body(values, row)
        if key_result is not None:
            key_results.append(key_result)
            origins.append(row)
    body["key_results"] = key_results
    return body, origins


def from_objective(view: Mapping[str, Any]) -> tuple[Values, int]:
    """An objective as ``GET /objectives/{id}`` answers it, as form values (to edit)."""
    objective = view["objective"]
    period = objective["period"]
    values: Values = {
        "title": objective["title"],
        "description": objective.get("description") or "",
        "owner": objective.get("owner") or "",
        "contributors": ", ".join(objective.get("contributors") or []),
        "org_unit": objective["org_unit"],
        "level": objective["level"],
        "period": period["label"]
        if period["cadence"] != "custom"
        else f"{period['start']}..{period['end']}",
        "type": objective.get("type", "committed"),
        "weight": _shown(objective.get("weight")),
        "parent": ":".join(
            part
            for part in (objective.get("parent_id"), objective.get("parent_key_result_id"))
            if part
        ),
    }
    for row, key_result in enumerate(objective["key_results"]):
        for name in KEY_RESULT_FIELDS:
            value = key_result.get(name)
            text = "\n".join(value) if name == "checklist" else _shown(value)
            values[f"key_results.{row}.{name}"] = text
    return values, len(objective["key_results"])


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def field_errors(
    detail: Any, fields: set[str], origins: list[int] | None = None
) -> tuple[dict[str, list[str]], list[str]]:
    """The API's 422 ``detail`` by form field (the longest known prefix of its ``loc``), and
    the messages that belong to no field."""
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    for error in detail if isinstance(detail, list) else [{"msg": str(detail)}]:
        path = [str(part) for part in error.get("loc", [])[1:]]
        if (
            origins is not None
            and len(path) > 1
            and path[0] == "key_results"
            and path[1].isdigit()
            and int(path[1]) < len(origins)
        ):
            path[1] = str(origins[int(path[1])])
        message = str(error.get("msg", "invalid"))
        for end in range(len(path), 0, -1):
            name = ".".join(path[:end])
            if name in fields:
                by_field.setdefault(name, []).append(message)
                break
        else:
            general.append(f"{'.'.join(path) + ': ' if path else ''}{message}")
    return by_field, general


def form_fields(rows: int) -> set[str]:
    return (
        set(OBJECTIVE_FIELDS)
        | {f"key_results.{row}.{name}" for row in range(rows) for name in KEY_RESULT_FIELDS}
        | {"key_results", "parent_id", "parent_key_result_id"}
    )


def hygiene(body: Mapping[str, Any], owners_active: int) -> list[str]:
    """The advice for an objective about to be saved: focus on 3 to 5 key results, and on
    at most 5 objectives per owner and period (``owners_active``: the owner's others)."""
    warnings = []
    count = len(body.get("key_results", []))
    if not FEWEST_KEY_RESULTS <= count <= MOST_KEY_RESULTS:
        warnings.append(
            f"{count} key results: {FEWEST_KEY_RESULTS} to {MOST_KEY_RESULTS} keep an "
            "objective focused."
        )
    if owners_active + 1 > MOST_OBJECTIVES:
        warnings.append(
            f"{body.get('owner') or 'The owner'} would have {owners_active + 1} active "
            f"objectives in this period: at most {MOST_OBJECTIVES} keep them achievable."
        )
    return warnings


def check_in_body(values: Values, kind: str, checklist: list[str]) -> dict[str, Any]:
    """A check-in as the API takes it, for a key result of ``kind``."""
    body: dict[str, Any] = {}
    if kind == "metric" and values.get("value", "").strip():
        body["value"] = number(values["value"].strip())
    if kind == "milestone":
        if checklist:
            body["checklist_done"] = [
                item for index, item in enumerate(checklist) if values.get(f"item.{index}")
            ]
        else:
            body["done"] = bool(values.get("done"))
    if values.get("confidence", "").strip():
        confidence = number(values["confidence"].strip())
        # A whole number goes as one; anything else as typed, for the API to refuse.
        whole = isinstance(confidence, float) and confidence.is_integer()
        body["confidence"] = int(confidence) if whole else confidence
    if values.get("comment", "").strip():
        body["comment"] = values["comment"].strip()
    return body
