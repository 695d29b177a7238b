"""The web console's forms: a form becomes the API body, the API's field errors come back
next to the fields they name, and the hygiene warnings before saving."""

from __future__ import annotations

from starlette.datastructures import FormData

from services.web import forms


def posted(**fields: str) -> FormData:
    return FormData([(name.replace("__", "."), value) for name, value in fields.items()])


def test_a_form_becomes_the_api_body_with_blank_rows_left_out() -> None:
    values, rows = forms.read(
        posted(
            title="Grow",
            owner="kim",
            org_unit="sales",
            level="team",
            period="2026-01-01..2026-06-30",
            type="committed",
            contributors="ana, bo",
            parent="p-1:kr-9",
            key_results__0__title="Close deals",
            key_results__0__kind="kpi",
            key_results__0__kpi="deals",
            key_results__0__target="1,200",
            key_results__0__baseline="ten",
            key_results__1__title="",
            key_results__1__kind="metric",
        )
    )
    body, origins = forms.objective_body(values, rows)
    assert rows == 2
    assert body["period"] == {"start": "2026-01-01", "end": "2026-06-30"}
    assert body["contributors"] == ["ana", "bo"]
    assert (body["parent_id"], body["parent_key_result_id"]) == ("p-1", "kr-9")
    assert body["key_results"] == [
        {"title": "Close deals", "kind": "kpi", "kpi": "deals", "target": 1200.0, "baseline": "ten"}
    ]
    assert origins == [0]


def test_the_apis_errors_land_next_to_the_fields_of_the_rows_they_came_from() -> None:
    detail = [
        {"loc": ["body", "key_results", 0, "baseline"], "msg": "a number", "type": "float"},
        {"loc": ["body", "period", "str"], "msg": "no such period", "type": "period"},
        {"loc": ["body"], "msg": "something else", "type": "x"},
    ]
    by_field, general = forms.field_errors(detail, forms.form_fields(3), origins=[2])
    assert by_field == {"key_results.2.baseline": ["a number"], "period": ["no such period"]}
    assert general == ["something else"]


def test_an_objective_read_back_fills_the_edit_form() -> None:
    view = {
        "objective": {
            "title": "Grow",
            "owner": "kim",
            "org_unit": "sales",
            "level": "team",
            "period": {"label": "2026-Q4", "cadence": "quarterly", "start": "", "end": ""},
            "weight": 1.0,
            "key_results": [
                {
                    "id": "kr-1",
                    "title": "Close",
                    "kind": "milestone",
                    "target": None,
                    "checklist": ["a", "b"],
                    "weight": 2.0,
                }
            ],
        }
    }
    values, rows = forms.from_objective(view)
    assert rows == 1
    assert values["period"] == "2026-Q4"
    assert values["key_results.0.checklist"] == "a\nb"
    assert values["key_results.0.weight"] == "2"
    body, _ = forms.objective_body(values, rows)
    assert body["key_results"][0]["checklist"] == ["a", "b"]
    assert body["key_results"][0]["id"] == "kr-1"


def test_hygiene_asks_for_three_to_five_key_results_and_five_objectives_at_most() -> None:
    assert forms.hygiene({"key_results": [{}] * 3, "owner": "kim"}, owners_active=4) == []
    warnings = forms.hygiene({"key_results": [{}] * 6, "owner": "kim"}, owners_active=5)
    assert warnings[0].startswith("6 key results")
    assert "kim would have 6 active objectives" in warnings[1]


def test_a_check_in_sends_what_the_kind_takes() -> None:
    assert forms.check_in_body({"value": "12", "confidence": "7"}, "metric", []) == {
        "value": 12.0,
        "confidence": 7,
    }
    assert forms.check_in_body({"item.1": "yes", "confidence": "11"}, "milestone", ["a", "b"]) == {
        "checklist_done": ["b"],
        "confidence": 11,
    }
    assert forms.check_in_body({"confidence": "high"}, "kpi", []) == {"confidence": "high"}
