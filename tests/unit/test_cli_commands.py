"""The ``okr`` subject commands (objective, kpi, tree, gaps, history, demo) driven as a person or
a script would, against fake services behind ``httpx.MockTransport``: each sends the request
its service's API expects, renders the answer, passes the JSON through with ``--json``, and
fails in one line with exit code 1."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from services import demo as demo_data
from services.cli import app, client
from services.cli.context import ACTOR_IGNORED

SERVICES = {8001: "goal", 8002: "metrics", 8003: "alignment"}
OBJECTIVE_ID = "5b0c9a52-4c55-4a4e-9a8f-2f6f1d3c7e01"
CHILD_ID = "0d7f3b1e-9a1c-4a57-8f0e-6c2d4b9a1f22"
KR_CHURN = "kr-churn-3f1a"
KR_SURVEY = "kr-survey-77b2"


@dataclass(frozen=True)
class Sent:
    """One request a command sent, as the service saw it."""

    service: str
    method: str
    path: str
    #: As sent, percent-encoding kept: a quoted ``/`` is not a separator.
    raw_path: str
    query: dict[str, str]
    body: Any
    authorization: str | None


class FakeServices:
    """The three services on their default ports: each route answers what ``answer`` set
    (404 otherwise), and every request is kept for the test to check."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str, str], tuple[int, Any]] = {}
        self.sent: list[Sent] = []

    def answer(self, service: str, method: str, path: str, body: Any, status: int = 200) -> None:
        self.routes[(service, method, path)] = (status, body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        service = SERVICES[request.url.port or 80]
        self.sent.append(
            Sent(
                service=service,
                method=request.method,
                path=request.url.path,
                raw_path=request.url.raw_path.decode().partition("?")[0],
                query=dict(request.url.params),
                body=json.loads(request.content) if request.content else None,
                authorization=request.headers.get("Authorization"),
            )
        )
        status, body = self.routes.get(
            (service, request.method, request.url.path), (404, {"detail": "no such route"})
        )
        return httpx.Response(status, json=body)

    @property
    def only(self) -> Sent:
        """The one request the command sent."""
        assert len(self.sent) == 1, self.sent
        return self.sent[0]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own OKR_* variables must not change what the tests see."""
    for name in ("OKR_TOKEN", "OKR_ACTOR", "OKR_METRICS_URL", "OKR_GOAL_URL", "OKR_ALIGNMENT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "pause", lambda seconds: None)


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> FakeServices:
    fake = FakeServices()
    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(fake.handle))
    return fake


@pytest.fixture
def refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """No service is running: every connection is refused."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(refuse))


def okr(
    *args: str, stdin: str | None = None, token: str | None = None, actor: str | None = None
) -> Result:
    # Wide enough that rich never wraps a title or an id the assertions look for.
    env = {"COLUMNS": "220"} | ({"OKR_TOKEN": token} if token else {})
    env |= {"OKR_ACTOR": actor} if actor else {}
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def one_error_line(result: Result) -> str:
    """The failure a person sees: exit 1, nothing on stdout, one line on stderr."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- what the services answer -------------------------------------------------------------------


def objective_view(**changes: Any) -> dict[str, Any]:
    """``GET /objectives/{id}`` as the goal service answers it."""
    view: dict[str, Any] = {
        "objective": {
            "id": OBJECTIVE_ID,
            "title": "Improve customer loyalty",
            "description": "",
            "owner": "kim.cs",
            "contributors": [],
            "org_unit": "customer-success",
            "level": "department",
            "period": {
                "label": "2026-Q4",
                "cadence": "quarterly",
                "start": "2026-10-01",
                "end": "2026-12-31",
            },
            "type": "committed",
            "weight": 1.0,
            "parent_id": None,
            "parent_key_result_id": None,
            "status": "active",
            "key_results": [],
        },
        "key_results": [
            {
                "id": KR_CHURN,
                "title": "Reduce churn from 8% to 5%",
                "kind": "metric",
                "unit": "%",
                "baseline": 8.0,
                "target": 5.0,
                "weight": 1.0,
                "kpi": None,
                "aggregation": None,
                "checklist": [],
                "check_in": {
                    "value": 6.5,
                    "done": None,
                    "checklist_done": None,
                    "confidence": 7,
                    "comment": "monthly review",
                    "actor": "kim.cs",
                    "at": "2026-11-20T09:00:00+00:00",
                },
                "score": {"score": 0.5, "status": "at_risk", "value": 6.5},
            },
            {
                "id": KR_SURVEY,
                "title": "Interview 30 churned customers",
                "kind": "milestone",
                "unit": None,
                "baseline": None,
                "target": None,
                "weight": 1.0,
                "kpi": None,
                "aggregation": None,
                "checklist": [],
                "check_in": None,
                "score": None,
            },
        ],
        "version": 3,
        "created_at": "2026-10-01T08:00:00Z",
        "modified_at": "2026-11-20T09:00:00Z",
        "last_actor": "kim.cs",
        "score": {"score": 0.25, "status": "off_track", "expected": 0.55},
        "warnings": [],
    }
    view.update(changes)
    return view


def kpi_status(**changes: Any) -> dict[str, Any]:
    """``GET /kpis/{key}`` as the metrics service answers it."""
    status: dict[str, Any] = {
        "definition": {
            "key": "churn_rate",
            "name": "Customer churn rate",
            "unit": "%",
            "direction": "lower_is_better",
            "target": 5.0,
            "warning": 7.0,
            "interval": "P7D",
            "interval_seconds": 604800.0,
            "indicator": "lagging",
            "owner": "kim.cs",
            "description": "",
        },
        "value": 6.2,
        "observed_at": "2026-11-20T09:00:00Z",
        "health": "warning",
        "stale": False,
        "stagnant": True,
        "unhealthy_since": None,
        "readings": 6,
        "last_arrival": "2026-11-20T09:00:01Z",
        "version": 7,
    }
    status.update(changes)
    return status


def ingest_report(status: str, reason: str | None = None) -> dict[str, Any]:
    """``POST /kpis/{key}/readings`` answered for one reading."""
    return {
        "recorded": int(status == "recorded"),
        "duplicates": int(status == "duplicate"),
        "rejected": int(status == "rejected"),
        "outcomes": [
            {
                "index": 0,
                "kpi": "churn_rate",
                "reading_id": "r-42",
                "status": status,
                "reason": reason,
            }
        ],
    }


def key_result_node(title: str, score: float | None, value: float | None) -> dict[str, Any]:
    return {
        "id": f"kr-{title[:4]}",
        "title": title,
        "kind": "kpi",
        "target": 300.0,
        "score": score,
        "value": value,
        "status": "on_track" if score else None,
    }


TREE = [
    {
        "id": OBJECTIVE_ID,
        "title": "Become the #1 provider of AI-powered chatbots",
        "owner": "dana.ceo",
        "period": "2026",
        "score": 0.72,
        "pace": "on_track",
        "key_results": [key_result_node("Onboard 300 new customers", 0.28, 84.0)],
        "children": [
            {
                "id": CHILD_ID,
                "title": "Deepen customer relationships",
                "owner": "lee.growth",
                "period": "2026-Q4",
                "score": None,
                "pace": None,
                "key_results": [key_result_node("Grow the mailing list", None, None)],
                "children": [],
            }
        ],
    }
]

GAPS = [
    {
        "gap_id": "stale_kpi:churn_rate",
        "kind": "stale_kpi",
        "subject": "churn_rate",
        "message": "no reading of churn_rate for 15 days",
        "owner": "kim.cs",
        "period": None,
        "since": "2026-11-01T00:00:00+00:00",
    }
]


def history_entries() -> list[dict[str, Any]]:
    """``GET /objectives/{id}/history``: set, redefined, checked in, archived."""
    first = objective_view()["objective"] | {
        "key_results": [{"id": KR_CHURN, "title": "Reduce churn from 8% to 5%", "target": 5.0}]
    }
    second = first | {
        "title": "Win customers back",
        "key_results": [{"id": KR_CHURN, "title": "Reduce churn from 8% to 5%", "target": 4.0}],
    }

    def entry(version: int, event_type: str, payload: Any, changes: Any) -> dict[str, Any]:
        return {
            "version": version,
            "event_type": event_type,
            "occurred_at": f"2026-11-0{version}T10:00:00Z",
            "actor": "kim.cs",
            "correlation_id": None,
            "payload": payload,
            "changes": changes,
        }

    return [
        entry(1, "ObjectiveSet", first, []),
        entry(
            2,
            "ObjectiveSet",
            second,
            [
                {
                    "field": f"key_results[{KR_CHURN}].target",
                    "before": 5.0,
                    "after": 4.0,
                },
                {"field": "title", "before": "Improve customer loyalty", "after": second["title"]},
            ],
        ),
        entry(
            3,
            "KeyResultCheckedIn",
            {"objective_id": OBJECTIVE_ID, "key_result_id": KR_CHURN, "value": 6.5},
            [],
        ),
        entry(4, "ObjectiveArchived", {"objective_id": OBJECTIVE_ID, "reason": "merged"}, []),
    ]


# -- okr objective ------------------------------------------------------------------------------


def test_objective_create_from_flags_posts_the_objective_and_shows_its_key_result_ids(
    services: FakeServices,
) -> None:
    services.answer("goal", "POST", "/objectives", objective_view(), status=201)

    result = okr(
        "objective",
        "create",
        "--title",
        "Improve customer loyalty",
        "--owner",
        "kim.cs",
        "--org-unit",
        "customer-success",
        "--level",
        "department",
        "--period",
        "2026-Q4",
        "--type",
        "aspirational",
        "--parent-id",
        CHILD_ID,
        "--kr",
        "Reduce churn from 8% to 5%|metric|8|5",
        "--kr",
        "Raise NPS | kpi | 20 | 45 | net_promoter_score | latest",
        "--kr",
        "Interview 30 churned customers|milestone||",
    )

    assert result.exit_code == 0, result.output
    sent = services.only
    assert (sent.service, sent.method, sent.path) == ("goal", "POST", "/objectives")
    assert sent.body == {
        "title": "Improve customer loyalty",
        "owner": "kim.cs",
        "org_unit": "customer-success",
        "level": "department",
        "period": "2026-Q4",
        "type": "aspirational",
        "parent_id": CHILD_ID,
        "key_results": [
            {"title": "Reduce churn from 8% to 5%", "kind": "metric", "baseline": 8, "target": 5},
            {
                "title": "Raise NPS",
                "kind": "kpi",
                "baseline": 20,
                "target": 45,
                "kpi": "net_promoter_score",
                "aggregation": "latest",
            },
            {"title": "Interview 30 churned customers", "kind": "milestone"},
        ],
    }
    assert "Created: Improve customer loyalty" in result.stdout
    assert KR_CHURN in result.stdout
    assert KR_SURVEY in result.stdout


def test_objective_create_sends_a_custom_period_as_start_and_end(services: FakeServices) -> None:
    services.answer("goal", "POST", "/objectives", objective_view(), status=201)

    result = okr(
        "objective",
        "create",
        "--title",
        "Grow personal brand",
        "--period",
        "2026-07-01..2026-12-31",
    )

    assert result.exit_code == 0, result.output
    assert services.only.body["period"] == {"start": "2026-07-01", "end": "2026-12-31"}
    assert services.only.body["key_results"] == []


def test_objective_create_from_a_file_posts_it_unchanged(
    services: FakeServices, tmp_path: Path
) -> None:
    body = {"title": "From a file", "owner": "kim.cs", "key_results": [{"title": "x"}]}
    path = tmp_path / "objective.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    services.answer("goal", "POST", "/objectives", objective_view(), status=201)

    result = okr("objective", "create", "--file", str(path), "--json")

    assert result.exit_code == 0, result.output
    assert services.only.body == body
    assert json.loads(result.stdout) == objective_view()


def test_objective_create_reads_stdin_for_dash(services: FakeServices) -> None:
    services.answer("goal", "POST", "/objectives", objective_view(), status=201)

    result = okr("objective", "create", "-f", "-", stdin='{"title": "piped"}')

    assert result.exit_code == 0, result.output
    assert services.only.body == {"title": "piped"}


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (
            ["--kr", "Churn|metric|eight|5", "--title", "t"],
            None,
            "baseline 'eight' is not a number",
        ),
        (["--kr", "Churn", "--title", "t"], None, "expected title|kind|baseline|target"),
        (["--kr", "Churn|metric|nan|5", "--title", "t"], None, "baseline must be a finite"),
        (["-f", "-", "--title", "t"], "{}", "not both"),
        (["-f", "-"], '{"title": ', "stdin is not JSON"),
        (["-f", "-"], "[1, 2]", "JSON list, not an objective"),
        (["-f", "missing.json"], None, "missing.json: no such file"),
        ([], None, "give the objective with --file"),
    ],
)
def test_objective_create_refuses_wrong_input_before_sending_anything(
    services: FakeServices, args: list[str], stdin: str | None, expected: str
) -> None:
    line = one_error_line(okr("objective", "create", *args, stdin=stdin))

    assert expected in line
    assert services.sent == []


def test_a_422_names_the_broken_field(services: FakeServices) -> None:
    services.answer(
        "goal",
        "POST",
        "/objectives",
        {
            "detail": [
                {
                    "loc": ["body", "key_results", 0, "target"],
                    "msg": "target must differ from baseline",
                    "type": "baseline_equals_target",
                }
            ]
        },
        status=422,
    )

    line = one_error_line(okr("objective", "create", "--title", "t", "--kr", "x|metric|5|5"))

    assert "422" in line
    assert "body.key_results.0.target: target must differ from baseline" in line


def test_objective_list_sends_only_the_filters_given_and_lists_the_objectives(
    services: FakeServices,
) -> None:
    services.answer("goal", "GET", "/objectives", [objective_view()["objective"]])

    result = okr("objective", "list", "--period", "2026-Q4", "--owner", "kim.cs")

    assert result.exit_code == 0, result.output
    assert services.only.query == {"period": "2026-Q4", "owner": "kim.cs"}
    assert "Improve customer loyalty" in result.stdout
    assert OBJECTIVE_ID in result.stdout
    assert "Objectives (1)" in result.stdout


def test_objective_show_renders_key_results_check_ins_and_scores(services: FakeServices) -> None:
    services.answer("goal", "GET", f"/objectives/{OBJECTIVE_ID}", objective_view())

    result = okr("objective", "show", OBJECTIVE_ID)

    assert result.exit_code == 0, result.output
    assert (services.only.method, services.only.path) == ("GET", f"/objectives/{OBJECTIVE_ID}")
    out = result.stdout
    assert "off_track" in out
    assert "25%" in out
    assert "at_risk" in out
    assert "50%" in out
    assert "value 6.5, confidence 7/10, 'monthly review'" in out
    assert "metric 8 → 5 %" in out


def test_objective_show_quotes_an_id_into_one_path_segment(services: FakeServices) -> None:
    okr("objective", "show", "../kpis")

    assert services.only.raw_path == "/objectives/..%2Fkpis"


def test_objective_archive_posts_the_reason(services: FakeServices) -> None:
    archived = objective_view()
    archived["objective"] = archived["objective"] | {"status": "archived"}
    services.answer("goal", "POST", f"/objectives/{OBJECTIVE_ID}/archive", archived)

    result = okr("objective", "archive", OBJECTIVE_ID, "--reason", "merged into growth")

    assert result.exit_code == 0, result.output
    assert services.only.body == {"reason": "merged into growth"}
    assert "Archived" in result.stdout
    assert "archived" in result.stdout


def test_objective_archive_without_a_reason_sends_no_body(services: FakeServices) -> None:
    services.answer("goal", "POST", f"/objectives/{OBJECTIVE_ID}/archive", objective_view())

    result = okr("objective", "archive", OBJECTIVE_ID)

    assert result.exit_code == 0, result.output
    assert services.only.body is None


def test_objective_check_in_sends_only_what_was_given(services: FakeServices) -> None:
    path = f"/objectives/{OBJECTIVE_ID}/key-results/{KR_SURVEY}/check-ins"
    services.answer("goal", "POST", path, objective_view(), status=201)

    result = okr(
        "objective",
        "check-in",
        OBJECTIVE_ID,
        KR_SURVEY,
        "--not-done",
        "--checklist-done",
        "long list",
        "--checklist-done",
        "interviews",
        "--confidence",
        "8",
        "--comment",
        "on the way",
    )

    assert result.exit_code == 0, result.output
    assert services.only.body == {
        "done": False,
        "checklist_done": ["long list", "interviews"],
        "confidence": 8,
        "comment": "on the way",
    }
    assert "Checked in" in result.stdout


def test_objective_check_in_of_a_value(services: FakeServices) -> None:
    path = f"/objectives/{OBJECTIVE_ID}/key-results/{KR_CHURN}/check-ins"
    services.answer("goal", "POST", path, objective_view(), status=201)

    result = okr("objective", "check-in", OBJECTIVE_ID, KR_CHURN, "--value", "-0.5")

    assert result.exit_code == 0, result.output
    assert services.only.body == {"value": -0.5}


# -- okr kpi ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "verb"), [(201, "Defined"), (200, "Redefined")])
def test_kpi_define_puts_the_definition(services: FakeServices, status: int, verb: str) -> None:
    services.answer("metrics", "PUT", "/kpis/churn_rate", kpi_status(), status=status)

    result = okr(
        "kpi",
        "define",
        "churn_rate",
        "--name",
        "Customer churn rate",
        "--direction",
        "lower_is_better",
        "--target",
        "5",
        "--warning",
        "7",
        "--unit",
        "%",
        "--interval",
        "P7D",
        "--owner",
        "kim.cs",
    )

    assert result.exit_code == 0, result.output
    assert (services.only.service, services.only.method) == ("metrics", "PUT")
    assert services.only.body == {
        "name": "Customer churn rate",
        "direction": "lower_is_better",
        "target": 5.0,
        "warning": 7.0,
        "unit": "%",
        "interval": "P7D",
        "owner": "kim.cs",
    }
    assert f"{verb} KPI churn_rate" in result.stdout


def test_kpi_list_shows_value_health_and_flags(services: FakeServices) -> None:
    services.answer("metrics", "GET", "/kpis", [kpi_status()])

    result = okr("kpi", "list")

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "churn_rate" in line)
    assert "6.2 %" in row
    assert "warning" in row
    assert row.split("│")[6].strip() == "no"  # stale
    assert row.split("│")[7].strip() == "yes"  # stagnant


def test_kpi_show_shows_value_health_stale_and_stagnant(services: FakeServices) -> None:
    services.answer("metrics", "GET", "/kpis/churn_rate", kpi_status(stale=True))

    result = okr("kpi", "show", "churn_rate")

    assert result.exit_code == 0, result.output
    fields = {
        cells[1].strip(): cells[2].strip()
        for line in result.stdout.splitlines()
        if len(cells := line.split("│")) == 4
    }
    assert fields["value"] == "6.2 %"
    assert fields["health"] == "warning"
    assert fields["stale"] == "yes"
    assert fields["stagnant"] == "yes"


def test_kpi_show_gives_target_and_warning_in_the_kpis_unit(services: FakeServices) -> None:
    services.answer("metrics", "GET", "/kpis/churn_rate", kpi_status(value=None, readings=0))

    result = okr("kpi", "show", "churn_rate")

    assert result.exit_code == 0, result.output
    fields = {
        cells[1].strip(): cells[2].strip()
        for line in result.stdout.splitlines()
        if len(cells := line.split("│")) == 4
    }
    assert (fields["value"], fields["target"], fields["warning"]) == ("-", "5 %", "7 %")


def test_kpi_list_gives_the_target_in_the_kpis_unit(services: FakeServices) -> None:
    services.answer("metrics", "GET", "/kpis", [kpi_status()])

    result = okr("kpi", "list")

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "churn_rate" in line)
    assert row.split("│")[4].strip() == "5 %"


def test_kpi_record_posts_one_reading_and_shows_it_recorded(services: FakeServices) -> None:
    services.answer("metrics", "POST", "/kpis/churn_rate/readings", ingest_report("recorded"), 201)

    result = okr(
        "kpi",
        "record",
        "churn_rate",
        "-0.5",
        "--observed-at",
        "2026-11-20T09:00:00Z",
        "--reading-id",
        "r-42",
    )

    assert result.exit_code == 0, result.output
    assert services.only.body == [
        {
            "kpi": "churn_rate",
            "value": -0.5,
            "observed_at": "2026-11-20T09:00:00Z",
            "source": "cli",
            "reading_id": "r-42",
        }
    ]
    assert "recorded" in result.stdout


def test_kpi_record_observes_now_in_utc_by_default(services: FakeServices) -> None:
    services.answer("metrics", "POST", "/kpis/churn_rate/readings", ingest_report("duplicate"))

    result = okr("kpi", "record", "churn_rate", "6", "--source", "billing")

    assert result.exit_code == 0, result.output
    (reading,) = services.only.body
    observed = datetime.fromisoformat(reading["observed_at"])
    assert observed.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - observed) < timedelta(minutes=1)
    assert reading["source"] == "billing"
    assert "duplicate" in result.stdout


def test_kpi_record_rejected_shows_why_and_exits_1(services: FakeServices) -> None:
    reason = "observed_at: Input should have timezone info"
    services.answer(
        "metrics", "POST", "/kpis/churn_rate/readings", ingest_report("rejected", reason)
    )

    result = okr("kpi", "record", "churn_rate", "6", "--observed-at", "2026-11-20T09:00:00")

    assert result.exit_code == 1
    assert "rejected" in result.stdout
    assert result.stderr.strip() == f"error: the metrics service rejected the reading: {reason}"


# -- okr tree, gaps -----------------------------------------------------------------------------


def test_tree_nests_aligned_objectives_with_scores_and_pace(services: FakeServices) -> None:
    services.answer("alignment", "GET", "/tree", TREE)

    result = okr("tree", "--period", "2026", "--org-unit", "company")

    assert result.exit_code == 0, result.output
    assert services.only.service == "alignment"
    assert services.only.query == {"period": "2026", "org_unit": "company"}
    lines = result.stdout.splitlines()
    parent = next(i for i, line in enumerate(lines) if "Become the #1 provider" in line)
    kr = next(i for i, line in enumerate(lines) if "Onboard 300 new customers" in line)
    child = next(i for i, line in enumerate(lines) if "Deepen customer relationships" in line)
    assert parent < kr < child
    assert "72%" in lines[parent]
    assert "on_track" in lines[parent]
    assert "28%" in lines[kr]
    assert "value 84 of 300" in lines[kr]

    def depth(line: str) -> int:
        return len(line) - len(line.lstrip("│├└─ "))

    assert depth(lines[child]) > depth(lines[parent])


def test_gaps_sends_the_filters_and_lists_the_gaps(services: FakeServices) -> None:
    services.answer("alignment", "GET", "/gaps", GAPS)

    result = okr("gaps", "--kind", "stale_kpi", "--owner", "kim.cs")

    assert result.exit_code == 0, result.output
    assert services.only.query == {"kind": "stale_kpi", "owner": "kim.cs"}
    assert "no reading of churn_rate for 15 days" in result.stdout
    assert "Open gaps (1)" in result.stdout


# -- okr history --------------------------------------------------------------------------------


def test_history_csv_prints_a_header_and_one_row_per_entry(services: FakeServices) -> None:
    services.answer("goal", "GET", f"/objectives/{OBJECTIVE_ID}/history", history_entries())

    result = okr("history", OBJECTIVE_ID, "--format", "csv")

    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["version"] for row in rows] == ["1", "2", "3", "4"]
    assert [row["event_type"] for row in rows] == [
        "ObjectiveSet",
        "ObjectiveSet",
        "KeyResultCheckedIn",
        "ObjectiveArchived",
    ]
    assert rows[0]["summary"].startswith("created 'Improve customer loyalty'")
    assert "'Reduce churn from 8% to 5%': target 5 → 4" in rows[1]["summary"]
    assert "title 'Improve customer loyalty' → 'Win customers back'" in rows[1]["summary"]
    assert rows[2]["summary"] == "check-in on 'Reduce churn from 8% to 5%': value 6.5"
    assert rows[3]["summary"] == "archived: merged"
    assert rows[3]["actor"] == "kim.cs"


def test_history_jsonl_prints_one_entry_per_line(services: FakeServices) -> None:
    entries = history_entries()
    services.answer("goal", "GET", f"/objectives/{OBJECTIVE_ID}/history", entries)

    result = okr("history", OBJECTIVE_ID, "--format", "jsonl")

    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [{k: v for k, v in line.items() if k != "summary"} for line in printed] == entries
    assert printed[3]["summary"] == "archived: merged"


def test_history_table_shows_who_did_what(services: FakeServices) -> None:
    services.answer("goal", "GET", f"/objectives/{OBJECTIVE_ID}/history", history_entries())

    result = okr("history", OBJECTIVE_ID)

    assert result.exit_code == 0, result.output
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in result.stdout.splitlines()
        if line.startswith("│") and line.split("│")[1].strip()
    ]
    assert [(row[0], row[1], row[3]) for row in rows] == [
        ("1", "ObjectiveSet", "kim.cs"),
        ("2", "ObjectiveSet", "kim.cs"),
        ("3", "KeyResultCheckedIn", "kim.cs"),
        ("4", "ObjectiveArchived", "kim.cs"),
    ]
    assert rows[2][2] == "2026-11-03 10:00:00Z"
    assert rows[3][4] == "archived: merged"


def test_history_json_and_another_format_are_refused(services: FakeServices) -> None:
    line = one_error_line(okr("history", OBJECTIVE_ID, "--json", "--format", "csv"))

    assert "alternatives" in line
    assert services.sent == []


# -- --json, the token, a service down ----------------------------------------------------------

JSON_PASSTHROUGH: list[tuple[list[str], str, str, str, Any]] = [
    (["objective", "list"], "goal", "GET", "/objectives", [objective_view()["objective"]]),
    (["objective", "show", OBJECTIVE_ID], "goal", "GET", f"/objectives/{OBJECTIVE_ID}", {"a": 1}),
    (["kpi", "list"], "metrics", "GET", "/kpis", [kpi_status()]),
    (["kpi", "show", "churn_rate"], "metrics", "GET", "/kpis/churn_rate", kpi_status()),
    (
        ["kpi", "record", "churn_rate", "1"],
        "metrics",
        "POST",
        "/kpis/churn_rate/readings",
        ingest_report("recorded"),
    ),
    (["tree"], "alignment", "GET", "/tree", TREE),
    (["gaps"], "alignment", "GET", "/gaps", GAPS),
    (
        ["history", OBJECTIVE_ID],
        "goal",
        "GET",
        f"/objectives/{OBJECTIVE_ID}/history",
        history_entries(),
    ),
]


@pytest.mark.parametrize(("args", "service", "method", "path", "body"), JSON_PASSTHROUGH)
@pytest.mark.parametrize("before", [True, False], ids=["okr --json", "command --json"])
def test_json_passes_the_services_answer_through(
    services: FakeServices,
    args: list[str],
    service: str,
    method: str,
    path: str,
    body: Any,
    before: bool,
) -> None:
    services.answer(service, method, path, body)

    result = okr(*(["--json", *args] if before else [*args, "--json"]))

    assert result.exit_code == 0, result.output
    assert (services.only.service, services.only.method, services.only.path) == (
        service,
        method,
        path,
    )
    assert json.loads(result.stdout) == body


@pytest.mark.parametrize(("args", "service", "method", "path", "body"), JSON_PASSTHROUGH)
def test_every_command_sends_the_token(
    services: FakeServices, args: list[str], service: str, method: str, path: str, body: Any
) -> None:
    services.answer(service, method, path, body)

    result = okr(*args, token="s3cret")

    assert result.exit_code == 0, result.output
    assert services.only.authorization == "Bearer s3cret"


WRITES: list[tuple[list[str], str, str, str, Any]] = [
    (["kpi", "define", "churn_rate", "--name", "n"], "metrics", "PUT", "/kpis/churn_rate", {}),
    (
        ["kpi", "record", "churn_rate", "1"],
        "metrics",
        "POST",
        "/kpis/churn_rate/readings",
        ingest_report("recorded"),
    ),
    (
        ["objective", "archive", OBJECTIVE_ID],
        "goal",
        "POST",
        f"/objectives/{OBJECTIVE_ID}/archive",
        objective_view(),
    ),
]


@pytest.mark.parametrize(("args", "service", "method", "path", "body"), WRITES)
def test_a_write_with_a_token_says_okr_actor_is_ignored(
    services: FakeServices, args: list[str], service: str, method: str, path: str, body: Any
) -> None:
    services.answer(service, method, path, body)

    result = okr(*args, "--json", token="s3cret", actor="dana.ceo")

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [ACTOR_IGNORED]
    assert "OKR_ACTOR is ignored" in ACTOR_IGNORED
    assert services.only.method == method


@pytest.mark.parametrize(
    ("token", "actor", "args"),
    [
        (None, "dana.ceo", ["kpi", "record", "churn_rate", "1"]),  # OKR_ACTOR is the actor
        ("s3cret", None, ["kpi", "record", "churn_rate", "1"]),
        ("s3cret", "dana.ceo", ["kpi", "show", "churn_rate"]),  # a read records no actor
    ],
)
def test_okr_actor_is_not_warned_about_where_it_applies_or_means_nothing(
    services: FakeServices, token: str | None, actor: str | None, args: list[str]
) -> None:
    services.answer("metrics", "POST", "/kpis/churn_rate/readings", ingest_report("recorded"))
    services.answer("metrics", "GET", "/kpis/churn_rate", kpi_status())

    result = okr(*args, token=token, actor=actor)

    assert result.exit_code == 0, result.output
    assert result.stderr == ""


@pytest.mark.usefixtures("refused")
@pytest.mark.parametrize(
    ("args", "service", "port"),
    [
        (["objective", "list"], "goal", 8001),
        (["objective", "create", "--title", "t"], "goal", 8001),
        (["objective", "check-in", OBJECTIVE_ID, KR_CHURN, "--value", "1"], "goal", 8001),
        (["kpi", "define", "churn_rate", "--name", "n"], "metrics", 8002),
        (["kpi", "record", "churn_rate", "1"], "metrics", 8002),
        (["tree"], "alignment", 8003),
        (["gaps"], "alignment", 8003),
        (["history", OBJECTIVE_ID, "--format", "csv"], "goal", 8001),
    ],
)
def test_a_service_down_is_one_line_and_exit_1(args: list[str], service: str, port: int) -> None:
    line = one_error_line(okr(*args))

    assert line.startswith(f"error: cannot reach the {service} service at http://127.0.0.1:{port}")
    assert "Connection refused" in line


def test_a_read_rides_out_a_restart_but_a_create_is_never_sent_twice(
    services: FakeServices,
) -> None:
    """Creating twice would make two objectives; reading again is harmless."""
    unavailable = {"detail": "the service is not ready"}
    services.answer("goal", "POST", "/objectives", unavailable, status=503)
    services.answer("goal", "GET", "/objectives", unavailable, status=503)

    create = okr("objective", "create", "--title", "t")
    listing = okr("objective", "list")

    assert "503" in one_error_line(create)
    assert "tried 3 times" in one_error_line(listing)
    assert [sent.method for sent in services.sent] == ["POST", "GET", "GET", "GET"]


def test_an_unknown_objective_is_the_services_404_in_one_line(services: FakeServices) -> None:
    services.answer(
        "goal", "GET", f"/objectives/{OBJECTIVE_ID}", {"detail": "no objective"}, status=404
    )

    line = one_error_line(okr("objective", "show", OBJECTIVE_ID))

    assert "404" in line
    assert "no objective" in line


# -- okr demo -----------------------------------------------------------------------------------


@pytest.fixture
def demo_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``services.demo``'s loaders replaced: they record the URL and token they were given."""
    loaded: list[str] = []

    def loader(count: int) -> Callable[..., int]:
        def load(url: str, token: str | None = None) -> int:
            loaded.append(url if token is None else f"{url} with {token}")
            return count

        return load

    monkeypatch.setattr(demo_data, "load_kpis", loader(66))
    monkeypatch.setattr(demo_data, "load_objectives", loader(8))
    return loaded


def test_demo_loads_kpis_then_objectives_and_says_what(demo_loads: list[str]) -> None:
    result = CliRunner().invoke(
        app, ["--metrics-url", "http://metrics:9", "--goal-url", "http://goal:9", "demo"]
    )

    assert result.exit_code == 0, result.output
    assert demo_loads == ["http://metrics:9", "http://goal:9"]
    assert f"Defined {len(demo_data.KPIS)} KPIs and recorded 66 readings" in result.stdout
    assert "Created 8 objectives" in result.stdout


def test_demo_sends_the_token_from_the_environment(
    demo_loads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKR_TOKEN", "t0ken")
    result = okr("demo")

    assert result.exit_code == 0, result.output
    assert demo_loads == ["http://127.0.0.1:8002 with t0ken", "http://127.0.0.1:8001 with t0ken"]


def test_demo_json(demo_loads: list[str]) -> None:
    result = okr("demo", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "kpis_defined": len(demo_data.KPIS),
        "readings_recorded": 66,
        "objectives_created": 8,
    }


def test_demo_says_when_the_services_already_hold_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_data, "load_kpis", lambda url, token: 0)
    monkeypatch.setattr(demo_data, "load_objectives", lambda url, token: 0)

    result = okr("demo")

    assert result.exit_code == 0, result.output
    assert "already holds KPIs" in result.stdout
    assert "already holds objectives" in result.stdout


def test_demo_with_a_service_down_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(url: str, token: str | None) -> int:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(demo_data, "load_kpis", refused)

    line = one_error_line(okr("demo"))

    assert line == (
        "error: cannot reach the metrics service at http://127.0.0.1:8002: "
        "[Errno 111] Connection refused"
    )


def test_demo_refused_by_a_service_shows_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    def refusing(url: str, token: str | None) -> int:
        request = httpx.Request("POST", f"{url}/objectives")
        answer = httpx.Response(409, json={"detail": "concurrent change"}, request=request)
        raise httpx.HTTPStatusError("409", request=request, response=answer)

    monkeypatch.setattr(demo_data, "load_kpis", lambda url, token: 0)
    monkeypatch.setattr(demo_data, "load_objectives", refusing)

    line = one_error_line(okr("demo"))

    assert "the goal service at http://127.0.0.1:8001 answered 409 Conflict" in line
    assert "concurrent change" in line
