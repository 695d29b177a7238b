"""Authentication and roles on a real service process: bearer tokens from configuration
(hashes only), distinct JSON 401 and 403, the token's owner as the actor, open operations
endpoints, and a service without tokens refusing to start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.shared.auth import TOKEN_ENTRIES, Role, new_token
from services.shared.local_broker import ApacheKafka
from tests.integration.test_goal_service import objective_body
from tests.support import ServiceProcess

pytestmark = pytest.mark.integration

ROLES = {
    "reader": (Role.reader,),
    "writer": (Role.reader, Role.writer),
    "auditor": (Role.reader, Role.auditor),
}
TOKENS = {name: new_token(name, roles) for name, roles in ROLES.items()}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


@pytest.fixture(scope="module")
def goal(kafka: ApacheKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    entries = TOKEN_ENTRIES.dump_json([entry for _, entry in TOKENS.values()]).decode()
    service = ServiceProcess("goal", tmp_path_factory.mktemp("goal"), kafka.bootstrap_servers)
    service.start(extra_env={"OKR_AUTH_DISABLED": "false", "OKR_AUTH_TOKENS": entries})
    yield service
    service.stop()


@pytest.mark.parametrize(
    ("headers", "reason", "says"),
    [
        ({}, "no token", "a bearer token is required"),
        ({"Authorization": "Bearer not-a-token"}, "unknown token", "not one this service knows"),
        (
            {"Authorization": f"Basic {TOKENS['writer'][0]}"},
            "not a bearer token",
            "a bearer token is required",
        ),
        ({"Authorization": "Bearer"}, "no token after the scheme", "a bearer token is required"),
    ],
)
def test_without_a_valid_token_the_answer_is_401(
    goal: ServiceProcess, headers: dict[str, str], reason: str, says: str
) -> None:
    for method, path in (("GET", "/objectives"), ("POST", "/objectives")):
        answer = httpx.request(method, f"{goal.url}{path}", headers=headers, json={})
        assert answer.status_code == 401, reason
        assert answer.json()["type"] == "unauthenticated"
        assert says in answer.json()["detail"], reason
        assert "not-a-token" not in answer.text, "a presented token is never echoed"
        assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("token", "method", "path", "status"),
    [
        ("reader", "GET", "/objectives", 200),
        ("reader", "POST", "/objectives", 403),
        ("reader", "GET", "/audit/verify", 403),
        ("auditor", "GET", "/audit/verify", 200),
        ("auditor", "POST", "/objectives", 403),
        ("writer", "GET", "/audit/verify", 403),
        ("writer", "POST", "/objectives", 201),
    ],
)
def test_each_role_opens_its_operations_only(
    goal: ServiceProcess, token: str, method: str, path: str, status: int
) -> None:
    body = objective_body("Roles") if method == "POST" else None
    answer = httpx.request(method, f"{goal.url}{path}", headers=bearer(token), json=body)
    assert answer.status_code == status, answer.text
    if status == 403:
        assert answer.json()["type"] == "forbidden"
        assert "role" in answer.json()["detail"]


def test_history_needs_the_auditor_and_names_the_token_owner_as_actor(
    goal: ServiceProcess,
) -> None:
    # A header cannot claim someone else: the token decides who acted.
    created = httpx.post(
        f"{goal.url}/objectives",
        json=objective_body("Actor"),
        headers=bearer("writer") | {"X-Actor": "mallory"},
    )
    assert created.status_code == 201, created.text
    history = f"{goal.url}/objectives/{created.json()['objective']['id']}/history"
    assert httpx.get(history, headers=bearer("reader")).status_code == 403
    entries = httpx.get(history, headers=bearer("auditor")).json()
    assert [entry["actor"] for entry in entries] == ["writer"]


def test_operations_endpoints_and_documents_are_open(goal: ServiceProcess) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert httpx.get(f"{goal.url}{path}").status_code == 200, path
    document = httpx.get(f"{goal.url}/openapi.json").json()
    create = document["paths"]["/objectives"]["post"]
    assert create["security"] == [{"bearer": []}]
    assert {"401", "403"} <= set(create["responses"])
    assert "writer" in create["description"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_tokens_never_reach_the_log(goal: ServiceProcess) -> None:
    httpx.get(f"{goal.url}/objectives", headers=bearer("reader"))
    httpx.get(f"{goal.url}/objectives", headers={"Authorization": "Bearer wrong-secret-1234"})
    logs = "".join(path.read_text(errors="replace") for path in goal.data_dir.parent.glob("*.log"))
    assert logs, "the service logged something"
    assert all(token not in logs for token, _ in TOKENS.values())
    assert "wrong-secret-1234" not in logs


def test_a_service_without_tokens_refuses_to_start(kafka: ApacheKafka, tmp_path: Path) -> None:
    service = ServiceProcess("goal", tmp_path, kafka.bootstrap_servers)
    with pytest.raises(RuntimeError, match="exited"):
        service.start(timeout=30, extra_env={"OKR_AUTH_DISABLED": "false"})
    log = "".join(path.read_text() for path in tmp_path.parent.glob("goal-*.log"))
    assert "OKR_AUTH_TOKENS" in log
