"""The ``okr`` command-line tool, driven as a person or a script would, against a fake metrics
service behind ``httpx.MockTransport``: no network, no sleeping through back-off."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from services.cli import app, client
from services.cli.context import ACTOR_IGNORED
from services.cli.readings import REJECTS_SHOWN, ImportSummary, Reject

HEADER = "kpi,value,observed_at,source,reading_id"
DEFAULT_URL = "http://127.0.0.1:8002"
REFUSED = "[Errno 111] Connection refused"


class FakeMetricsService:
    """Answers ``POST /readings`` the way the metrics service does: a value that is not a number
    or a KPI named ``unknown`` is rejected with a reason, a reading id seen before is a
    duplicate. ``failures`` replaces the answer to the n-th request (0-based) with an error
    status or a raised transport error, to play a service that is down or restarting."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.batches: list[list[dict[str, Any]]] = []
        self.failures: dict[int, int | httpx.TransportError] = {}
        self.seen: set[str] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        number = len(self.requests)
        self.requests.append(request)
        failure = self.failures.get(number)
        if isinstance(failure, httpx.TransportError):
            raise failure
        if failure is not None:
            return httpx.Response(failure, json={"detail": "the service is not ready"})
        assert (request.method, request.url.path) == ("POST", "/readings")
        readings: list[dict[str, Any]] = json.loads(request.content)
        self.batches.append(readings)
        outcomes = [self._outcome(index, reading) for index, reading in enumerate(readings)]
        counts = {
            key: sum(outcome["status"] == status for outcome in outcomes)
            for key, status in (
                ("recorded", "recorded"),
                ("duplicates", "duplicate"),
                ("rejected", "rejected"),
            )
        }
        return httpx.Response(201, json={**counts, "outcomes": outcomes})

    def _outcome(self, index: int, reading: dict[str, Any]) -> dict[str, Any]:
        reading_id = reading.get("reading_id") or f"{reading['kpi']}@{reading['observed_at']}"
        outcome = {"index": index, "kpi": reading["kpi"], "reading_id": reading_id}
        if not isinstance(reading["value"], int | float):
            return outcome | {"status": "rejected", "reason": "value: Input should be a number"}
        if reading["kpi"] == "unknown":
            return outcome | {"status": "rejected", "reason": "unknown KPI 'unknown'"}
        if reading_id in self.seen:
            return outcome | {"status": "duplicate", "reason": None}
        self.seen.add(reading_id)
        return outcome | {"status": "recorded", "reason": None}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own OKR_* variables must not change what the tests see."""
    for name in ("OKR_TOKEN", "OKR_ACTOR", "OKR_METRICS_URL", "OKR_GOAL_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The back-off delays the client asked for, instead of waiting them out."""
    asked: list[float] = []
    monkeypatch.setattr(client, "pause", asked.append)
    return asked


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> FakeMetricsService:
    fake = FakeMetricsService()
    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(fake.handle))
    return fake


def okr(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def write_csv(tmp_path: Path, lines: Sequence[str], name: str = "readings.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def reading_rows(count: int, *, first: int = 0) -> list[str]:
    return [f"revenue,{n},2026-01-01T00:00:00Z,crm,r{n}" for n in range(first, first + count)]


def import_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = okr("readings", "import", *args, "--json", env=env)
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def total(output: str, label: str) -> int:
    """A count from the human summary table, for example the ``recorded`` row."""
    match = re.search(rf"{label}\W+([\d,]+)", output)
    assert match, f"no {label!r} row in:\n{output}"
    return int(match.group(1).replace(",", ""))


def test_2500_rows_go_in_three_batches_and_the_summary_counts_add_up(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    rows = reading_rows(2400) + reading_rows(90)  # 90 repeated reading ids: duplicates
    rows += ["revenue,n/a,2026-01-01T00:00:00Z,crm,bad" + str(n) for n in range(10)]
    path = write_csv(tmp_path, [HEADER, *rows])

    result = okr("readings", "import", str(path))

    assert result.exit_code == 0, result.output
    assert [len(batch) for batch in service.batches] == [1000, 1000, 500]
    assert total(result.stdout, "rows read") == 2500
    assert total(result.stdout, "recorded") == 2400
    assert total(result.stdout, "duplicates") == 90
    assert total(result.stdout, "rejected") == 10
    sent = [reading["reading_id"] for batch in service.batches for reading in batch]
    assert sent == [f"r{n}" for n in range(2400)] + [f"r{n}" for n in range(90)] + [
        f"bad{n}" for n in range(10)
    ]


def test_rejects_are_reported_by_the_line_their_row_starts_on(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        [
            HEADER,  # line 1
            "revenue,1,2026-01-01T00:00:00Z,crm,a",
            "revenue,lots,2026-01-01T00:00:00Z,crm,b",  # line 3: not a number
            "",  # line 4: blank, skipped and not counted
            'unknown,2,2026-01-01T00:00:00Z,"crm',  # lines 5-6: one row (a quoted newline),
            'export",c',  # an unknown KPI
            "revenue,3,2026-01-01T00:00:00Z,crm,d",
            "revenue,4,2026-01-01T00:00:00Z",  # line 8: two cells short, never sent
            "revenue,5,2026-01-01T00:00:00Z,crm,e",
        ],
    )

    summary = import_json(str(path), "--batch-size", "2")

    assert [(reject["line"], reject["kpi"]) for reject in summary["rejects"]] == [
        (3, "revenue"),
        (5, "unknown"),
        (8, "revenue"),
    ]
    reasons = [reject["reason"] for reject in summary["rejects"]]
    assert "number" in reasons[0]
    assert "unknown KPI" in reasons[1]
    assert "3 cells" in reasons[2]
    assert (summary["rows"], summary["recorded"], summary["rejected"]) == (6, 3, 3)
    assert [reading["reading_id"] for batch in service.batches for reading in batch] == list(
        "abcde"
    )


def test_the_table_lists_the_first_20_rejects_and_json_lists_all(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    bad = [f"revenue,oops,2026-01-01T00:00:00Z,crm,x{n}" for n in range(25)]  # lines 2-26
    path = write_csv(tmp_path, [HEADER, *bad])

    table = okr("readings", "import", str(path))
    listed = [int(line) for line in re.findall(r"^\W*(\d+)\W+revenue", table.stdout, re.M)]
    summary = import_json(str(path))

    assert table.exit_code == 0, table.output
    assert listed == list(range(2, 22))
    assert "5 more" in table.stdout
    assert [reject["line"] for reject in summary["rejects"]] == list(range(2, 27))


def test_a_missing_required_column_is_named_and_nothing_is_sent(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, ["kpi,value,source", "revenue,1,crm"])

    result = okr("readings", "import", str(path))

    assert result.exit_code == 1
    assert "missing required column observed_at" in result.stderr
    assert result.stderr.count("\n") == 1
    assert service.requests == []


def test_an_unknown_column_is_named(service: FakeMetricsService, tmp_path: Path) -> None:
    path = write_csv(tmp_path, [HEADER + ",region", "revenue,1,2026-01-01T00:00:00Z,crm,a,emea"])

    result = okr("readings", "import", str(path))

    assert result.exit_code == 1
    assert "unknown column 'region'" in result.stderr
    assert service.requests == []


def test_a_refused_connection_fails_at_once_in_one_line(
    service: FakeMetricsService, tmp_path: Path, pauses: list[float]
) -> None:
    service.failures[0] = httpx.ConnectError(REFUSED)
    path = write_csv(tmp_path, [HEADER, *reading_rows(3)])

    result = okr("readings", "import", str(path))

    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach the metrics service at {DEFAULT_URL}: {REFUSED}\n"
    assert len(service.requests) == 1
    assert pauses == []


def test_json_output_parses_and_has_the_counts_wherever_the_flag_is(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, [HEADER, *reading_rows(3), "revenue,x,2026-01-01T00:00:00Z,crm,z"])

    after = okr("readings", "import", str(path), "--json")
    before = okr("--json", "readings", "import", str(path))

    first = json.loads(after.stdout)
    assert {key: first[key] for key in ("rows", "recorded", "duplicates", "rejected")} == {
        "rows": 4,
        "recorded": 3,
        "duplicates": 0,
        "rejected": 1,
    }
    assert first["rejects"][0]["line"] == 5
    second = json.loads(before.stdout)
    assert (second["recorded"], second["duplicates"], second["rejected"]) == (0, 3, 1)


def test_fail_on_reject_exits_2_only_when_a_row_was_rejected(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    rejected = write_csv(tmp_path, [HEADER, "revenue,x,2026-01-01T00:00:00Z,crm,z"], "bad.csv")
    clean = write_csv(tmp_path, [HEADER, *reading_rows(2)], "good.csv")

    assert okr("readings", "import", str(rejected)).exit_code == 0
    assert okr("readings", "import", str(rejected), "--fail-on-reject").exit_code == 2
    assert okr("readings", "import", str(clean), "--fail-on-reject").exit_code == 0


def test_a_503_is_retried_with_the_same_batch(
    service: FakeMetricsService, tmp_path: Path, pauses: list[float]
) -> None:
    service.failures[0] = 503
    path = write_csv(tmp_path, [HEADER, *reading_rows(3)])

    summary = import_json(str(path))

    assert summary["recorded"] == 3
    assert len(service.requests) == 2
    assert service.requests[0].content == service.requests[1].content
    assert pauses == [0.5]


def test_a_service_that_keeps_failing_stops_the_import_after_five_attempts(
    service: FakeMetricsService, tmp_path: Path, pauses: list[float]
) -> None:
    service.failures = dict.fromkeys(range(10), 503)
    path = write_csv(tmp_path, [HEADER, *reading_rows(3)])

    result = okr("readings", "import", str(path))

    assert result.exit_code == 1
    assert "answered 503 Service Unavailable (tried 5 times)" in result.stderr
    assert "the service is not ready" in result.stderr
    assert pauses == [0.5, 1.0, 2.0, 4.0]


def test_a_restart_halfway_is_ridden_out_and_a_failure_says_how_far_it_got(
    service: FakeMetricsService, tmp_path: Path, pauses: list[float]
) -> None:
    path = write_csv(tmp_path, [HEADER, *reading_rows(30)])
    service.failures = {1: httpx.ConnectError(REFUSED), 2: httpx.ReadTimeout("timed out")}

    ridden_out = import_json(str(path), "--batch-size", "10")
    assert (ridden_out["recorded"], ridden_out["batches"]) == (30, 3)
    assert pauses == [0.5, 1.0]

    service.failures = {number: httpx.ConnectError(REFUSED) for number in range(6, 20)}
    stopped = okr("readings", "import", str(path), "--batch-size", "10")
    assert stopped.exit_code == 1
    assert "cannot reach the metrics service" in stopped.stderr
    assert "stopped after 10 rows" in stopped.stderr
    assert stopped.stderr.count("\n") == 1


def test_a_client_error_is_not_retried_and_a_refused_token_is_explained(
    service: FakeMetricsService, tmp_path: Path, pauses: list[float]
) -> None:
    service.failures[0] = 401
    path = write_csv(tmp_path, [HEADER, *reading_rows(1)])

    result = okr("readings", "import", str(path))

    assert result.exit_code == 1
    assert "answered 401 Unauthorized" in result.stderr
    assert "OKR_TOKEN" in result.stderr
    assert (len(service.requests), pauses) == (1, [])


def test_the_token_and_the_url_come_from_the_environment(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, [HEADER, *reading_rows(1)])
    env = {"OKR_TOKEN": "s3cret", "OKR_METRICS_URL": "http://metrics.example:9000/"}

    okr("readings", "import", str(path), env=env)
    okr("--metrics-url", "http://other.example:8080", "readings", "import", str(path))

    with_token, without_token = service.requests
    assert with_token.headers["Authorization"] == "Bearer s3cret"
    assert str(with_token.url) == "http://metrics.example:9000/readings"
    assert "Authorization" not in without_token.headers
    assert str(without_token.url) == "http://other.example:8080/readings"


def test_an_import_with_a_token_says_okr_actor_is_ignored(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, [HEADER, *reading_rows(3)])

    result = okr(
        "readings", "import", str(path), env={"OKR_TOKEN": "s3cret", "OKR_ACTOR": "dana.ceo"}
    )

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [ACTOR_IGNORED]
    assert len(service.requests) == 1


def test_cells_are_trimmed_numbers_sent_as_numbers_and_empty_optional_cells_left_out(
    service: FakeMetricsService, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        [
            "unit, source ,kpi,observed_at,value,reading_id",
            "EUR, crm , revenue ,2026-01-01T00:00:00+01:00, 12.5 ,",
            ",crm,revenue,2026-01-01T00:00:00Z,1e999,",
            ",crm,revenue,2026-01-01T00:00:00Z,,",
        ],
    )

    import_json(str(path))

    assert service.batches == [
        [
            {
                "unit": "EUR",
                "source": "crm",
                "kpi": "revenue",
                "observed_at": "2026-01-01T00:00:00+01:00",
                "value": 12.5,
            },
            {
                "source": "crm",
                "kpi": "revenue",
                "observed_at": "2026-01-01T00:00:00Z",
                "value": "1e999",
            },
            {"source": "crm", "kpi": "revenue", "observed_at": "2026-01-01T00:00:00Z", "value": ""},
        ]
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["readings", "import", "{missing}"], "no such file"),
        (["readings", "import", "{empty}"], "is empty"),
        (["readings", "import", "{good}", "--batch-size", "10001"], "between 1 and 10,000"),
        (["readings", "import", "{good}", "--batch-size", "0"], "between 1 and 10,000"),
        (["--metrics-url", "localhost:8002", "readings", "import", "{good}"], "not an http"),
    ],
)
def test_input_that_cannot_run_exits_1_with_one_line(
    service: FakeMetricsService, tmp_path: Path, args: list[str], message: str
) -> None:
    files = {
        "missing": str(tmp_path / "nowhere.csv"),
        "empty": str(write_csv(tmp_path, [], "empty.csv")),
        "good": str(write_csv(tmp_path, [HEADER, *reading_rows(1)], "good.csv")),
    }

    result = okr(*(arg.format(**files) for arg in args))

    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert service.requests == []


def test_without_json_only_the_rejects_shown_are_kept_in_memory() -> None:
    """A file of millions of bad rows must not fill memory for a table that shows twenty."""
    table = ImportSummary(file="f.csv", keep_all_rejects=False)
    machine = ImportSummary(file="f.csv", keep_all_rejects=True)

    for line in range(2, 2 + REJECTS_SHOWN + 5):
        for summary in (table, machine):
            summary.add_reject(Reject(line=line, kpi="revenue", reading_id=None, reason="bad"))

    assert (table.rejected, len(table.rejects)) == (REJECTS_SHOWN + 5, REJECTS_SHOWN)
    assert (machine.rejected, len(machine.rejects)) == (REJECTS_SHOWN + 5, REJECTS_SHOWN + 5)
