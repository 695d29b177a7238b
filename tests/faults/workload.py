"""What the fault driver sends: the KPI catalogue, the readings (unique ids and observed times,
shuffled, with exact duplicates as sources resend them), the objective changes, and the
driver's own model of what every objective must look like in the end."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: The catalogue: key -> the body of ``PUT /kpis/{key}``, and the range readings fall in.
KPIS: dict[str, dict[str, Any]] = {
    "new_customers": {
        "name": "New customers",
        "direction": "higher_is_better",
        "target": 10.0,
        "warning": 5.0,
    },
    "churn_rate": {
        "name": "Churn rate",
        "unit": "%",
        "direction": "lower_is_better",
        "target": 5.0,
        "warning": 8.0,
    },
    "arr": {
        "name": "Annual recurring revenue",
        "unit": "USD",
        "direction": "higher_is_better",
        "target": 10_000_000.0,
        "warning": 6_000_000.0,
        "interval": "P30D",
    },
    "net_promoter_score": {
        "name": "Net promoter score",
        "unit": "points",
        "direction": "higher_is_better",
        "target": 45.0,
        "warning": 30.0,
    },
    "open_tickets": {
        "name": "Open support tickets",
        "direction": "lower_is_better",
        "target": 50.0,
        "warning": 100.0,
    },
    "uptime": {
        "name": "Uptime",
        "unit": "%",
        "direction": "higher_is_better",
        "target": 99.9,
        "warning": 99.5,
    },
}
#: Low and high end of each KPI's readings (and of the baselines and targets linked to it).
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "new_customers": (0.0, 20.0),
    "churn_rate": (2.0, 12.0),
    "arr": (1_000_000.0, 12_000_000.0),
    "net_promoter_score": (-20.0, 70.0),
    "open_tickets": (10.0, 200.0),
    "uptime": (98.0, 100.0),
}
#: Readings are observed from mid-December 2025 to the end of January 2027, so some fall
#: outside every objective's period and some arrive long after later ones (out of order).
OBSERVED_FROM = datetime(2025, 12, 15, tzinfo=UTC)
OBSERVED_MINUTES = 410 * 24 * 60
SOURCES = ("crm", "billing", "helpdesk", "web")
PERIODS = ("2026", "2026-Q3", "2026-Q4", "2026-10", "2026-11")
ORG_UNITS = ("sales", "support", "product", "finance")
OWNERS = ("ana.sales", "bo.support", "cy.product", "di.finance", "ed.sales")
AGGREGATIONS = ("latest", "sum", "avg", "min", "max", "count")


@dataclass(frozen=True)
class Reading:
    kpi: str
    value: float
    observed_at: datetime
    source: str
    reading_id: str

    def message(self) -> dict[str, Any]:
        """The JSON an outside system writes to ``kpi.readings``."""
        return {
            "kpi": self.kpi,
            "value": self.value,
            "observed_at": self.observed_at.isoformat().replace("+00:00", "Z"),
            "source": self.source,
            "reading_id": self.reading_id,
            **({"unit": KPIS[self.kpi]["unit"]} if "unit" in KPIS[self.kpi] else {}),
        }


def make_readings(count: int, duplicates: float, rng: random.Random) -> list[Reading]:
    """``count`` messages in sending order: unique readings and, for a ``duplicates`` share
    of them, exact copies sent again later (a source retrying). Within a KPI every reading
    has its own observed minute, so "latest" never depends on a tie."""
    copies = int(count * duplicates)
    unique = count - copies
    keys = list(KPIS)
    per_kpi = {
        key: unique // len(keys) + (1 if i < unique % len(keys) else 0)
        for i, key in enumerate(keys)
    }
    readings: list[Reading] = []
    for key, amount in per_kpi.items():
        low, high = VALUE_RANGES[key]
        minutes = rng.sample(range(OBSERVED_MINUTES), amount)
        for n, minute in enumerate(minutes):
            readings.append(
                Reading(
                    kpi=key,
                    value=round(rng.uniform(low, high), 2),
                    observed_at=OBSERVED_FROM + timedelta(minutes=minute),
                    source=rng.choice(SOURCES),
                    reading_id=f"{key}-{n}",
                )
            )
    rng.shuffle(readings)
    for _ in range(copies):  # a resent copy goes after its original
        at = rng.randrange(len(readings))
        readings.insert(rng.randrange(at, len(readings)) + 1, readings[at])
    return readings


@dataclass
class ObjectivePlan:
    """One objective as the driver last had it acknowledged (or found it after a lost answer).

    ``body`` is the command the goal service accepted, its key results with their ids."""

    token: str
    parent: bool
    body: dict[str, Any]
    objective_id: str | None = None
    archived: bool = False
    revision: int = 0
    #: key result id -> the last check-in acknowledged (value or done, and its comment).
    check_ins: dict[str, dict[str, Any]] = field(default_factory=dict)

    def expected(self) -> dict[str, Any]:
        """The definition the goal service must hold, in the form ``comparable`` gives."""
        return comparable_definition(
            {**self.body, "status": "archived" if self.archived else "active"}
        )


def comparable_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """The fields of an objective the driver sets, from a command body or a stored definition
    (a stored one has a period object and fills in defaults)."""
    period = definition["period"]
    return {
        "title": definition["title"],
        "owner": definition.get("owner"),
        "org_unit": definition["org_unit"],
        "level": definition["level"],
        "period": period["label"] if isinstance(period, dict) else period,
        "type": definition.get("type", "committed"),
        "weight": float(definition.get("weight", 1.0)),
        "parent_id": definition.get("parent_id"),
        "parent_key_result_id": definition.get("parent_key_result_id"),
        "status": definition.get("status", "active"),
        "key_results": [
            {
                "id": kr.get("id"),
                "title": kr["title"],
                "kind": kr["kind"],
                "kpi": kr.get("kpi"),
                "aggregation": kr.get("aggregation") or ("latest" if kr["kind"] == "kpi" else None),
                "baseline": kr.get("baseline"),
                "target": kr.get("target"),
                "weight": float(kr.get("weight", 1.0)),
                "checklist": list(kr.get("checklist", [])),
            }
            for kr in definition["key_results"]
        ],
    }


class ObjectiveDesigner:
    """Draws objective bodies and their changes from a seeded random source."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def kpi_key_result(self) -> dict[str, Any]:
        key = self.rng.choice(list(KPIS))
        aggregation = self.rng.choice(AGGREGATIONS)
        low, high = VALUE_RANGES[key]
        if aggregation in ("sum", "count"):
            baseline, target = 0.0, float(self.rng.choice((50, 500, 5000, 50_000)))
        else:
            baseline, target = self.rng.sample([low, high, round((low + high) / 2, 2)], 2)
        return {
            "title": f"{aggregation} of {key}",
            "kind": "kpi",
            "kpi": key,
            "aggregation": aggregation,
            "baseline": baseline,
            "target": target,
            "weight": float(self.rng.choice((1, 1, 2, 3))),
        }

    def other_key_result(self) -> dict[str, Any]:
        if self.rng.random() < 0.6:
            return {
                "title": "Reach the metric",
                "kind": "metric",
                "baseline": 0.0,
                "target": float(self.rng.choice((10, 100, 1000))),
                "weight": 1.0,
            }
        checklist = ["design", "build", "ship"] if self.rng.random() < 0.5 else []
        return {"title": "Deliver", "kind": "milestone", "checklist": checklist, "weight": 1.0}

    def parent(self, token: str) -> dict[str, Any]:
        return {
            "title": f"{token} company objective",
            "owner": "ceo",
            "org_unit": "company",
            "level": "company",
            "period": "2026",
            "type": "aspirational",
            "key_results": [
                {"title": "Teams deliver", "kind": "rollup", "weight": 2.0},
                self.kpi_key_result(),
            ],
        }

    def child(self, token: str, parent: ObjectivePlan | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "title": f"{token} team objective",
            "owner": self.rng.choice(OWNERS),
            "org_unit": self.rng.choice(ORG_UNITS),
            "level": "team",
            "period": self.rng.choice(PERIODS),
            "type": self.rng.choice(("committed", "aspirational")),
            "weight": float(self.rng.choice((1, 1, 2))),
            "key_results": [
                self.kpi_key_result() if self.rng.random() < 0.7 else self.other_key_result()
                for _ in range(self.rng.randint(1, 3))
            ],
        }
        if parent is not None:
            assert parent.objective_id is not None
            body["parent_id"] = parent.objective_id
            body["parent_key_result_id"] = parent.body["key_results"][0]["id"]
        return body

    def redefinition(self, plan: ObjectivePlan) -> dict[str, Any]:
        """The plan's body with one thing changed (key results keep their ids)."""
        body = {**plan.body, "key_results": [dict(kr) for kr in plan.body["key_results"]]}
        body["title"] = (
            f"{plan.token} {'company' if plan.parent else 'team'} objective r{plan.revision + 1}"
        )
        changeable = [kr for kr in body["key_results"] if kr["kind"] != "rollup"]
        choice = self.rng.choice(
            ("target", "aggregation", "weight", "period", "add", "drop")
            if not plan.parent
            else ("target", "aggregation", "weight")
        )
        kr = self.rng.choice(changeable)
        if choice == "target" and kr["kind"] in ("kpi", "metric"):
            kr["target"] = float(kr["target"]) * self.rng.choice((0.5, 2.0)) + 1.0
            if kr["target"] == kr["baseline"]:
                kr["target"] += 1.0
        elif choice == "aggregation" and kr["kind"] == "kpi":
            kr["aggregation"] = self.rng.choice(AGGREGATIONS)
        elif choice == "period":
            body["period"] = self.rng.choice(PERIODS)
        elif choice == "add" and len(body["key_results"]) < 5:
            body["key_results"].append(self.kpi_key_result())
        elif choice == "drop" and len(changeable) > 1:
            body["key_results"].remove(kr)
        else:
            kr["weight"] = float(kr.get("weight", 1.0)) + 1.0
        return body

    def check_in(self, plan: ObjectivePlan, comment: str) -> tuple[str, dict[str, Any]] | None:
        """A check-in for one of the plan's metric or milestone key results, if it has one."""
        candidates = [
            kr for kr in plan.body["key_results"] if kr["kind"] in ("metric", "milestone")
        ]
        if not candidates:
            return None
        kr = self.rng.choice(candidates)
        if kr["kind"] == "metric":
            return kr["id"], {
                "value": float(self.rng.randint(0, int(kr["target"]) + 10)),
                "comment": comment,
            }
        if kr.get("checklist"):
            done = self.rng.sample(kr["checklist"], self.rng.randint(0, len(kr["checklist"])))
            return kr["id"], {"checklist_done": done, "comment": comment}
        return kr["id"], {"done": self.rng.random() < 0.5, "comment": comment}
