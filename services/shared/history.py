"""Field-level differences between two versions of a definition, for auditors' histories."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted paths; lists of dicts that have an ``id`` keyed by that id
    (``key_results[<id>].target``), so reordering a list is not reported as a change."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return flat
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, Mapping) and "id" in item for item in value)
    ):
        flat = {}
        for item in value:
            flat |= flatten({k: v for k, v in item.items() if k != "id"}, f"{prefix}[{item['id']}]")
        return flat
    return {prefix: value}


class FieldChange(BaseModel):
    """One field a new version changed, by its dotted path; None where it was or is absent."""

    field: str
    before: Any = None
    after: Any = None


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[FieldChange]:
    """Every field whose value differs, with its value before and after (None: absent)."""
    old, new = flatten(before or {}), flatten(after)
    return [
        FieldChange(field=field, before=old.get(field), after=new.get(field))
        for field in sorted(old.keys() | new.keys())
        if old.get(field) != new.get(field)
    ]
