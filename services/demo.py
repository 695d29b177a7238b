"""Demo OKRs and KPIs taken from the seed articles' own examples, loaded through the services'
APIs. Loaded once: a service that already holds objectives (or KPIs) gets nothing added.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

CEO = "dana.ceo"


@dataclass(frozen=True)
class DemoPeriods:
    """The demo's periods, around the day it is loaded: the seeds' yearly, quarterly and
    half-year OKRs stay current, so a reading observed now counts towards them."""

    year: str
    quarter: str
    half: dict[str, str]

    @classmethod
    def around(cls, today: date) -> DemoPeriods:
        quarter = (today.month - 1) // 3 + 1
        quarter_end = (
            date(today.year, quarter * 3 + 1, 1) - timedelta(days=1)
            if quarter < 4
            else date(today.year, 12, 31)
        )
        start_month = quarter_end.year * 12 + quarter_end.month - 6  # counted from year 0
        half_start = date(start_month // 12, start_month % 12 + 1, 1)
        return cls(
            year=str(today.year),
            quarter=f"{today.year}-Q{quarter}",
            half={"start": half_start.isoformat(), "end": quarter_end.isoformat()},
        )


def _kr(title: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"title": title, "kind": kind, **fields}


def company_objective(periods: DemoPeriods) -> dict[str, Any]:
    return {
        "title": "Become the #1 provider of AI-powered chatbots",
        "description": "The big, hairy, audacious goal for the year.",
        "owner": CEO,
        "org_unit": "company",
        "level": "company",
        "period": periods.year,
        "type": "aspirational",
        "key_results": [
            _kr(
                "Achieve $10M in annual recurring revenue from the chatbot platform",
                "kpi",
                kpi="annual_recurring_revenue",
                aggregation="latest",
                baseline=2_000_000,
                target=10_000_000,
                unit="USD",
            ),
            _kr(
                "Onboard 300 new customers",
                "kpi",
                kpi="new_customers",
                aggregation="sum",
                baseline=0,
                target=300,
                unit="customers",
            ),
            _kr(
                "Reach 10k monthly active users",
                "kpi",
                kpi="monthly_active_users",
                aggregation="latest",
                baseline=1_500,
                target=10_000,
                unit="users",
            ),
        ],
    }


def aligned_objectives(
    company_id: str, company_krs: list[str], periods: DemoPeriods
) -> list[dict[str, Any]]:
    """Department, team and individual objectives aligned to the company objective."""
    return [
        {
            "title": "Boost market presence by year-end",
            "owner": "sam.cmo",
            "org_unit": "marketing",
            "level": "department",
            "period": periods.year,
            "parent_id": company_id,
            "key_results": [
                _kr("Grow revenue by 40%", "metric", baseline=0, target=40, unit="%"),
                _kr("Launch 3 new products", "metric", baseline=0, target=3, unit="products"),
                _kr("Add 2 new markets", "metric", baseline=0, target=2, unit="markets"),
                _kr(
                    "Increase social media engagement by 50%",
                    "metric",
                    baseline=0,
                    target=50,
                    unit="%",
                ),
            ],
        },
        {
            "title": "Deepen customer relationships with a direct mail list",
            "owner": "lee.growth",
            "org_unit": "marketing/growth",
            "level": "team",
            "period": periods.quarter,
            "parent_id": company_id,
            "parent_key_result_id": company_krs[1],
            "key_results": [
                _kr(
                    "Add 500 new subscribers each week",
                    "kpi",
                    kpi="weekly_new_subscribers",
                    aggregation="avg",
                    baseline=0,
                    target=500,
                    unit="subscribers",
                ),
                _kr(
                    "Grow the mailing list to 20,000 names",
                    "kpi",
                    kpi="mailing_list_size",
                    aggregation="latest",
                    baseline=8_000,
                    target=20_000,
                    unit="names",
                ),
            ],
        },
        {
            "title": "Improve customer loyalty",
            "description": "Net promoter score dropped: find out why and win customers back.",
            "owner": "kim.cs",
            "org_unit": "customer-success",
            "level": "department",
            "period": periods.quarter,
            "parent_id": company_id,
            "contributors": ["hr", "sales"],
            "key_results": [
                _kr(
                    "Reduce churn from 8% to 5%",
                    "kpi",
                    kpi="churn_rate",
                    aggregation="latest",
                    baseline=8,
                    target=5,
                    unit="%",
                ),
                _kr(
                    "Raise net promoter score from 20 to 45",
                    "kpi",
                    kpi="net_promoter_score",
                    aggregation="latest",
                    baseline=20,
                    target=45,
                    unit="points",
                ),
                _kr("Interview 30 churned customers", "metric", baseline=0, target=30),
            ],
        },
        {
            "title": "Implement a CRM tool to improve the Forecast Accuracy KPI",
            "owner": "ray.salesops",
            "org_unit": "sales",
            "level": "team",
            "period": periods.quarter,
            "parent_id": company_id,
            "key_results": [
                _kr(
                    "Investigate, interview and provide the top 3 system solutions",
                    "milestone",
                    checklist=["long list", "interviews", "top 3 report"],
                ),
                _kr(
                    "Recruit 3 CRM integration specialist candidates",
                    "metric",
                    baseline=0,
                    target=3,
                    unit="candidates",
                ),
                _kr("Identify and create sales funnel stages", "milestone"),
            ],
        },
        {
            "title": "Improve new product introductions to achieve the Revenue Growth KPI",
            "owner": "ada.product",
            "org_unit": "product",
            "level": "department",
            "period": periods.year,
            "parent_id": company_id,
            "key_results": [
                _kr(
                    "Create a customer panel with 10 lead customers",
                    "metric",
                    baseline=0,
                    target=10,
                    unit="customers",
                ),
                _kr(
                    "Cut the time to create products by 50%",
                    "metric",
                    baseline=100,
                    target=50,
                    unit="% of today",
                ),
                _kr("Create a sales plan to grow new product sales by 60%", "milestone"),
            ],
        },
        {
            "title": "Reduce the cycle time to onboard new employees",
            "owner": "pat.hr",
            "org_unit": "hr",
            "level": "team",
            "period": periods.quarter,
            "key_results": [
                _kr(
                    "Interview 10 recently hired employees about onboarding",
                    "metric",
                    baseline=0,
                    target=10,
                    unit="interviews",
                ),
                _kr(
                    "Interview 5 department leads about their onboarding process",
                    "metric",
                    baseline=0,
                    target=5,
                    unit="interviews",
                ),
                _kr("Research and report onboarding best practices", "milestone"),
            ],
        },
        {
            "title": "Grow personal brand in 6 months",
            "owner": "dana.ceo",
            "org_unit": "company",
            "level": "individual",
            "period": periods.half,
            "type": "aspirational",
            "key_results": [
                _kr("Increase followers by 60%", "metric", baseline=0, target=60, unit="%"),
                _kr(
                    "Post content 4 times per week",
                    "kpi",
                    kpi="posts_per_week",
                    aggregation="avg",
                    baseline=0,
                    target=4,
                    unit="posts",
                ),
                _kr("Speak at 2 industry events", "metric", baseline=0, target=2),
                _kr("Collaborate with 3 key influencers", "metric", baseline=0, target=3),
            ],
        },
    ]


def _headers(actor: str, token: str | None) -> dict[str, str]:
    """With a token, the token's name is the actor; without, authentication is off."""
    return {"X-Actor": actor} | ({"Authorization": f"Bearer {token}"} if token else {})


def load_objectives(
    goal_url: str, actor: str = "demo", token: str | None = None, today: date | None = None
) -> int:
    """Create the demo objectives and a few check-ins, in periods around ``today``; returns
    how many objectives it added."""
    periods = DemoPeriods.around(today or datetime.now(UTC).date())
    with httpx.Client(base_url=goal_url, headers=_headers(actor, token), timeout=30) as client:
        if client.get("/objectives").raise_for_status().json():
            return 0
        company = (
            client.post("/objectives", json=company_objective(periods)).raise_for_status().json()
        )
        company_id = company["objective"]["id"]
        company_krs = [kr["id"] for kr in company["key_results"]]
        created = [company]
        for body in aligned_objectives(company_id, company_krs, periods):
            created.append(client.post("/objectives", json=body).raise_for_status().json())
        by_title = {view["objective"]["title"]: view for view in created}
        presence = by_title["Boost market presence by year-end"]
        for key_result, value in zip(presence["key_results"], (28, 2, 1, 35), strict=True):
            client.post(
                f"/objectives/{presence['objective']['id']}/key-results/{key_result['id']}"
                "/check-ins",
                json={"value": value, "confidence": 7, "comment": "monthly review"},
            ).raise_for_status()
        crm = by_title["Implement a CRM tool to improve the Forecast Accuracy KPI"]
        client.post(
            f"/objectives/{crm['objective']['id']}/key-results/{crm['key_results'][0]['id']}"
            "/check-ins",
            json={"checklist_done": ["long list", "interviews"], "confidence": 8},
        ).raise_for_status()
        return len(created)


def _kpi(
    name: str,
    unit: str,
    direction: str,
    target: float,
    warning: float,
    interval: str,
    indicator: str = "lagging",
    owner: str = CEO,
) -> dict[str, Any]:
    return {
        "name": name,
        "unit": unit,
        "direction": direction,
        "target": target,
        "warning": warning,
        "interval": interval,
        "indicator": indicator,
        "owner": owner,
    }


#: KPIs named in the seed articles, with targets in their direction (lower is better for
#: churn, cost and turnover). Keys match the key results of the demo objectives.
KPIS: dict[str, dict[str, Any]] = {
    "annual_recurring_revenue": _kpi(
        "Annual recurring revenue", "USD", "higher_is_better", 10_000_000, 6_000_000, "P1D"
    ),
    "new_customers": _kpi(
        "New customers", "customers", "higher_is_better", 2, 1, "P1D", "leading", "sales"
    ),
    "monthly_active_users": _kpi(
        "Monthly active users", "users", "higher_is_better", 10_000, 7_000, "P1D", "leading"
    ),
    "net_promoter_score": _kpi(
        "Net promoter score", "points", "higher_is_better", 45, 30, "P7D", owner="kim.cs"
    ),
    "churn_rate": _kpi("Customer churn rate", "%", "lower_is_better", 5, 7, "P7D", owner="kim.cs"),
    "revenue_growth_rate": _kpi("Revenue growth rate", "%", "higher_is_better", 10, 5, "P30D"),
    "customer_acquisition_cost": _kpi(
        "Customer acquisition cost", "USD", "lower_is_better", 200, 300, "P7D", owner="sam.cmo"
    ),
    "employee_turnover_rate": _kpi(
        "Employee turnover rate", "%", "lower_is_better", 10, 15, "P30D", owner="pat.hr"
    ),
    "weekly_new_subscribers": _kpi(
        "New mailing list subscribers per week",
        "subscribers",
        "higher_is_better",
        500,
        350,
        "P7D",
        "leading",
        "lee.growth",
    ),
    "mailing_list_size": _kpi(
        "Mailing list size", "names", "higher_is_better", 20_000, 15_000, "P7D", owner="lee.growth"
    ),
    "posts_per_week": _kpi(
        "Posts per week", "posts", "higher_is_better", 4, 2, "P7D", "leading", "dana.ceo"
    ),
}


@dataclass(frozen=True)
class Series:
    """Weekly readings of one KPI over the last weeks, oldest first."""

    kpi: str
    source: str
    values: tuple[float, ...]


SERIES = (
    Series("annual_recurring_revenue", "billing", (2.0e6, 2.4e6, 2.9e6, 3.3e6, 3.9e6, 4.6e6)),
    Series("new_customers", "crm", (9, 12, 14, 11, 17, 21)),
    Series("monthly_active_users", "web-analytics", (1500, 2200, 3100, 3900, 4800, 5600)),
    Series("net_promoter_score", "survey", (34, 31, 27, 24, 22, 21)),
    Series("churn_rate", "billing", (8.0, 7.8, 7.4, 7.1, 6.6, 6.2)),
    Series("revenue_growth_rate", "finance", (6.5, 7.0, 7.9, 8.4, 9.1, 9.8)),
    Series("customer_acquisition_cost", "finance", (340, 320, 310, 290, 270, 260)),
    Series("employee_turnover_rate", "hr", (17.6, 17.7, 17.6, 17.7, 17.6, 17.7)),
    Series("weekly_new_subscribers", "email-platform", (220, 260, 310, 350, 380, 410)),
    Series("mailing_list_size", "email-platform", (8000, 8300, 8600, 9000, 9400, 9800)),
    Series("posts_per_week", "social", (2, 3, 3, 4, 4, 5)),
)


def demo_readings(now: datetime) -> list[dict[str, Any]]:
    """One reading a week per KPI, the last one a day ago; new_customers are weekly counts."""
    readings = []
    for series in SERIES:
        for weeks_ago, value in zip(
            range(len(series.values) - 1, -1, -1), series.values, strict=True
        ):
            observed = now - timedelta(days=1 + 7 * weeks_ago)
            readings.append(
                {
                    "kpi": series.kpi,
                    "value": value,
                    "source": series.source,
                    "observed_at": observed.replace(microsecond=0).isoformat(),
                }
            )
    return readings


def load_kpis(
    metrics_url: str, actor: str = "demo", now: datetime | None = None, token: str | None = None
) -> int:
    """Define the demo KPIs and record their readings; returns how many readings it recorded."""
    headers = _headers(actor, token)
    with httpx.Client(base_url=metrics_url, headers=headers, timeout=30) as client:
        if client.get("/kpis").raise_for_status().json():
            return 0
        for key, definition in KPIS.items():
            client.put(f"/kpis/{key}", json=definition).raise_for_status()
        report = client.post("/readings", json=demo_readings(now or datetime.now(UTC)))
        recorded: int = report.raise_for_status().json()["recorded"]
        return recorded
