"""``okr verify``: one report per service, exit 2 when a log does not hold."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app, client

PORTS = {"8001": "goal", "8002": "metrics", "8003": "alignment"}


def serve(monkeypatch: pytest.MonkeyPatch, broken: set[str]) -> list[str]:
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        service = PORTS[str(request.url.port)]
        asked.append(f"{service} {request.url.path}")
        report: dict[str, Any] = {
            "service": service,
            "ok": service not in broken,
            "checked": 12,
            "head_position": 12,
            "head_hash": "ab" * 32,
            "broken_at": 7 if service in broken else None,
            "reason": "an event was altered, or events were reordered"
            if service in broken
            else None,
            "published_head": {"position": 12, "hash": "ab" * 32},
        }
        return httpx.Response(200, json=report)

    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(handle))
    return asked


def test_all_logs_verified_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = serve(monkeypatch, broken=set())
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 0, result.output
    assert asked == ["goal /audit/verify", "metrics /audit/verify", "alignment /audit/verify"]
    assert result.output.count("ok") >= 3


def test_a_broken_log_exits_2_and_names_where(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, broken={"metrics"})
    result = CliRunner().invoke(app, ["verify", "--json"])
    assert result.exit_code == 2
    reports = json.loads(result.output)
    assert [(r["service"], r["ok"], r["broken_at"]) for r in reports] == [
        ("goal", True, None),
        ("metrics", False, 7),
        ("alignment", True, None),
    ]


def test_a_service_down_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(refuse))
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 1
    assert "cannot reach the goal service" in result.output


def test_replay_asks_the_tree_as_of_the_instant_and_sends_the_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[httpx.Request] = []
    tree = [
        {
            "id": "o1",
            "title": "Become the #1 provider",
            "score": 0.5,
            "pace": "on_track",
            "owner": "dana",
            "period": "2026",
            "key_results": [],
            "children": [
                {
                    "id": "o2",
                    "title": "Deepen relationships",
                    "score": 0.25,
                    "pace": "at_risk",
                    "owner": "lee",
                    "period": "2026-Q4",
                    "key_results": [],
                    "children": [],
                }
            ],
        }
    ]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=tree)

    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(handle))
    result = CliRunner().invoke(
        app,
        ["--json", "replay", "--as-of", "2026-06-01T00:00:00Z", "--objective", "o2"],
        env={"OKR_ACTOR": "an.auditor"},
    )
    assert result.exit_code == 0, result.output
    assert [node["id"] for node in json.loads(result.output)] == ["o2"]
    (request,) = seen
    assert request.url.path == "/tree"
    assert request.url.params["as_of"] == "2026-06-01T00:00:00+00:00"
    assert request.headers["X-Actor"] == "an.auditor"


def test_replay_refuses_an_instant_without_timezone() -> None:
    result = CliRunner().invoke(app, ["replay", "--as-of", "2026-06-01T00:00:00"])
    assert result.exit_code == 1
    assert "has no timezone" in result.output
