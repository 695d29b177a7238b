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
