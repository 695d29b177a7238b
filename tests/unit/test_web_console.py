"""The web console's own rules, without a browser or a service: sessions, CSRF and cross-site
refusals, escaping of user text, and the token kept from pages, cookies and URLs. The services
are stood in for by an httpx mock transport."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.shared.auth import TOKEN_ENTRIES, Principal, Role, new_token
from services.shared.settings import Settings
from services.web.app import create_app
from services.web.pages import TEMPLATES, link, parse_instant
from services.web.sessions import SessionStore, cross_site
from services.web.settings import WebSettings
from services.web.signin import _safe_next
from services.web.tree import pruned

WRITER_TOKEN, WRITER = new_token("wanda", [Role.reader, Role.writer])
READER_TOKEN, READER = new_token("rita", [Role.reader])
HOSTILE = "<script>alert(1)</script>"
OBJECTIVE_ID = "7f1c1d54-8d43-4d8e-9c55-0c7f3cbb8d3a"


def tree_node(title: str = "Grow", **fields: Any) -> dict[str, Any]:
    return {
        "id": OBJECTIVE_ID,
        "title": title,
        "owner": "dana",
        "org_unit": "company",
        "level": "company",
        "period": "2026",
        "status": "active",
        "score": 0.5,
        "pace": "at_risk",
        "children": [],
        "key_results": [
            {
                "id": "kr-1",
                "title": "Onboard",
                "kind": "metric",
                "score": 0.25,
                "status": "off_track",
                "value": 1.0,
                "target": 4.0,
                "confidence": 6,
            }
        ],
    } | fields


def services(title: str = "Grow") -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Bearer ")
        if request.url.path == "/tree":
            return httpx.Response(200, json=[tree_node(title)])
        if request.url.path == "/objectives":
            return httpx.Response(200, json=[])
        return httpx.Response(404, json={"detail": "no such thing"})

    return answer


@pytest.fixture
def console() -> TestClient:
    platform = Settings(
        auth_disabled=False, auth_tokens=TOKEN_ENTRIES.dump_json([WRITER, READER]).decode()
    )
    app = create_app(WebSettings(), platform, httpx.MockTransport(services(HOSTILE)))
    return TestClient(app, base_url="http://console.test", follow_redirects=False)


def sign_in(client: TestClient, token: str) -> httpx.Response:
    form = client.get("/signin")
    secret = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert secret is not None
    fields = {"token": token, "csrf_token": secret.group(1), "next": "/"}
    answer: httpx.Response = client.post("/signin", data=fields)
    return answer


def page_csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_a_page_without_a_session_sends_to_the_sign_in_form(console: TestClient) -> None:
    answer = console.get("/", params={"owner": "dana"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2F%3Fowner%3Ddana"


def test_signing_in_keeps_the_token_on_the_server(console: TestClient) -> None:
    answer = sign_in(console, WRITER_TOKEN)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "okr_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert WRITER_TOKEN not in cookie
    tree = console.get("/")
    assert tree.status_code == 200
    assert WRITER_TOKEN not in tree.text
    assert "Signed in as <strong>wanda</strong>" in tree.text
    assert "Content-Security-Policy" in tree.headers


def test_an_unknown_token_is_refused_and_not_echoed(console: TestClient) -> None:
    answer = sign_in(console, "not-a-token-1234")
    assert answer.status_code == 401
    assert "not one the platform knows" in answer.text
    assert "not-a-token-1234" not in answer.text
    assert "okr_session" not in answer.headers.get("set-cookie", "")


def test_user_text_is_escaped(console: TestClient) -> None:
    sign_in(console, WRITER_TOKEN)
    page = console.get("/").text
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_reader_sees_no_write_controls(console: TestClient) -> None:
    sign_in(console, READER_TOKEN)
    page = console.get("/").text
    assert "New objective" not in page
    sign_in(console, WRITER_TOKEN)
    assert "New objective" in console.get("/").text


def test_a_cross_site_post_is_refused(console: TestClient) -> None:
    sign_in(console, WRITER_TOKEN)
    csrf = page_csrf(console.get("/").text)
    refused = console.post(
        "/signout", data={"csrf_token": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert refused.status_code == 403
    assert "not sent from this console" in refused.text
    assert console.get("/").status_code == 200, "still signed in"


def test_a_post_without_the_sessions_csrf_token_is_refused(console: TestClient) -> None:
    sign_in(console, WRITER_TOKEN)
    assert console.post("/signout", data={"csrf_token": "forged"}).status_code == 403
    csrf = page_csrf(console.get("/").text)
    assert console.post("/signout", data={"csrf_token": csrf}).status_code == 303
    assert console.get("/").status_code == 303, "signed out"


def test_the_sign_in_form_needs_its_own_secret(console: TestClient) -> None:
    console.get("/signin")
    forged = console.post("/signin", data={"token": WRITER_TOKEN, "csrf_token": "guess"})
    assert forged.status_code == 403


def test_sessions_expire_when_idle_and_the_oldest_go_beyond_capacity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    store = SessionStore(idle_seconds=60, capacity=2)
    principal = Principal("p", frozenset({Role.reader}))
    first, _ = store.open(principal, "t1")
    second, session = store.open(principal, "t2")
    assert first != second
    assert "t2" not in repr(session)
    clock[0] += 59
    assert store.find(first) is not None
    clock[0] += 59
    assert store.find(second) is None, "idle for longer than 60 s"
    third, _ = store.open(principal, "t3")
    store.open(principal, "t4")
    assert store.find(first) is None, "the least recently used went first"
    assert store.find(third) is not None
    store.close(third)
    assert store.find(third) is None


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("POST", {"sec-fetch-site": "cross-site"}, True),
        ("POST", {"sec-fetch-site": "same-site"}, True),
        ("POST", {"sec-fetch-site": "same-origin"}, False),
        ("POST", {"origin": "http://evil.test"}, True),
        ("POST", {"origin": "null"}, True),
        ("POST", {"origin": "http://console.test"}, False),
        ("POST", {}, False),
        ("GET", {"sec-fetch-site": "cross-site"}, False),
    ],
)
def test_cross_site_is_told_by_the_browsers_headers(
    method: str, headers: dict[str, str], refused: bool
) -> None:
    assert cross_site(method, headers, "console.test") is refused


@pytest.mark.parametrize(
    ("target", "went"),
    [("/kpis", "/kpis"), ("//evil.test/", "/"), ("https://evil.test", "/"), ("/\\evil", "/")],
)
def test_after_signing_in_only_a_path_of_the_console_is_followed(target: str, went: str) -> None:
    assert _safe_next(target) == went


def test_the_tree_page_costs_the_same_calls_however_many_objectives() -> None:
    """Confidence comes with ``/tree``: no call per objective, which made a large tree slow."""
    leaves = [tree_node(f"leaf {n}", id=f"leaf-{n}") for n in range(30)]
    cascade = [tree_node("root", id="root", children=leaves)]
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/tree":
            return httpx.Response(200, json=cascade)
        if request.url.path == "/objectives":
            return httpx.Response(200, json=[])
        return httpx.Response(404, json={"detail": "no such thing"})

    platform = Settings(auth_disabled=False, auth_tokens=TOKEN_ENTRIES.dump_json([WRITER]).decode())
    app = create_app(WebSettings(), platform, httpx.MockTransport(answer))
    client = TestClient(app, base_url="http://console.test", follow_redirects=False)
    assert sign_in(client, WRITER_TOKEN).status_code == 303
    asked.clear()
    page = client.get("/")
    assert page.status_code == 200
    assert sorted(asked) == ["/objectives", "/tree"]
    assert page.text.count('<td class="confidence">6/10</td>') == 31


def test_every_template_escapes() -> None:
    fragment = TEMPLATES.get_template("_objective.html").render(
        node=tree_node(HOSTILE),
        as_of=None,
        link=link,
    )
    assert HOSTILE not in fragment
    assert "&lt;script&gt;" in fragment
    assert TEMPLATES.env.autoescape is True


def test_an_instant_without_a_zone_is_utc() -> None:
    assert parse_instant("2026-03-01T12:00").isoformat() == "2026-03-01T12:00:00+00:00"
    assert parse_instant("2026-03-01T12:00:00Z") == parse_instant("2026-03-01T13:00:00+01:00")
    shared = link("/kpis", parse_instant("2026-03-01T12:00"))
    assert shared == "/kpis?as_of=2026-03-01T12%3A00%3A00Z"


def test_a_filter_keeps_the_matching_children_of_a_parent_left_out() -> None:
    child = tree_node("child", id="c", owner="kim")
    parent = tree_node("parent", id="p", owner="dana", children=[child])
    assert [node["id"] for node in pruned([parent], lambda n: n["owner"] == "kim")] == ["c"]
    kept = pruned([parent], lambda n: True)
    assert json.dumps(kept) == json.dumps([parent])
