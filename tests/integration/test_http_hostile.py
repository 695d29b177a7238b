"""Hand-picked hostile requests: each answered by a precise 4xx naming the field and the rule,
never a 5xx, and nothing stored from it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.alignment.__main__ import create_app as alignment_app
from services.alignment.telemetry import AlignmentCollector
from services.goal.__main__ import create_app as goal_app
from services.metrics.__main__ import create_app as metrics_app
from services.metrics.telemetry import KPICollector
from services.shared.settings import Settings

pytestmark = pytest.mark.integration

SERVICES = {"goal": goal_app, "metrics": metrics_app, "alignment": alignment_app}


@contextmanager
def service_app(service: str, data_dir: Path, bootstrap: str = "127.0.0.1:9") -> Iterator[FastAPI]:
    """The service's app as its ``__main__`` builds it, on a store in ``data_dir``. The
    metrics and alignment services register their business metrics in the process-wide
    registry: they are unregistered afterwards, so that another app can be built in the same
    process."""
    registered: list[Any] = []
    register = REGISTRY.register

    def remember(collector: Any) -> None:
        register(collector)
        registered.append(collector)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(REGISTRY, "register", remember)
        app = SERVICES[service](
            Settings(service=service, data_dir=data_dir, kafka_bootstrap_servers=bootstrap)
        )
    try:
        yield app
    finally:
        for collector in registered:
            if isinstance(collector, AlignmentCollector | KPICollector):
                REGISTRY.unregister(collector)


# -- the services, in process, without their Kafka side (no HTTP answer waits for it) --------


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FastAPI]]:
    with ExitStack() as stack:
        yield {
            service: stack.enter_context(service_app(service, tmp_path_factory.mktemp(service)))
            for service in SERVICES
        }


async def send(app: FastAPI, method: str, path: str, **request: Any) -> httpx.Response:
    # No lifespan is run: ASGITransport sends HTTP requests only. A 500 comes back as one.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **request)


def key_result(**changes: Any) -> dict[str, Any]:
    return {"title": "Cut churn", "kind": "metric", "baseline": 8, "target": 5} | changes


def objective(**changes: Any) -> dict[str, Any]:
    return {
        "title": "Keep customers",
        "owner": "dana.ceo",
        "org_unit": "company",
        "level": "company",
        "period": "2026-Q4",
        "key_results": [key_result()],
    } | changes


KPI = {"name": "New customers", "direction": "higher_is_better", "target": 300}
READING = {
    "kpi": "new_customers",
    "value": 3,
    "observed_at": "2026-11-02T10:00:00Z",
    "source": "crm",
}


@pytest.fixture(scope="module")
async def known(apps: dict[str, FastAPI]) -> dict[str, str]:
    """An objective and a KPI with a reading, that hostile requests must leave as they are."""
    created = await send(apps["goal"], "POST", "/objectives", json=objective())
    assert created.status_code == 201, created.text
    defined = await send(apps["metrics"], "PUT", "/kpis/new_customers", json=KPI)
    assert defined.status_code == 201, defined.text
    recorded = await send(apps["metrics"], "POST", "/readings", json=READING)
    assert recorded.status_code == 201, recorded.text
    found = created.json()
    return {"objective": found["objective"]["id"], "key_result": found["key_results"][0]["id"]}


async def stored(apps: dict[str, FastAPI], known: dict[str, str]) -> list[Any]:
    """What the services hold, as their API shows it."""
    objective_id = known["objective"]
    answers = [
        await send(apps["goal"], "GET", "/objectives"),
        await send(apps["goal"], "GET", f"/objectives/{objective_id}/history"),
        await send(apps["metrics"], "GET", "/kpis"),
        await send(apps["metrics"], "GET", "/kpis/new_customers/readings"),
    ]
    assert [answer.status_code for answer in answers] == [200] * len(answers)
    return [answer.json() for answer in answers]


# -- the hostile requests ---------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """A request and the answer it must get: a status and, for 415 and 422, an error at
    ``loc`` with the rule ``rule`` whose message has ``says`` in it; for 404 and 413, a part
    of the message (``rule``)."""

    method: str
    service: str
    path: str  # {objective}, {key_result}: the known objective and its key result
    status: int
    loc: tuple[str | int, ...]
    rule: str
    says: str
    body: dict[str, Any]


def hostile(request: str, answer: str, says: str = "", **body: Any) -> Hostile:
    """``hostile("POST goal /objectives", "422 body.key_results.0.weight greater_than_equal",
    json=...)``; ``body`` holds httpx's ``json``, ``content`` and ``headers``."""
    method, service, path = request.split(" ")
    status, _, rest = answer.partition(" ")
    if status in ("415", "422"):
        where, _, rule = rest.partition(" ")
        loc = tuple(int(part) if part.isdigit() else part for part in where.split("."))
    else:
        loc, rule = (), rest
    return Hostile(method, service, path, int(status), loc, rule, says, body)


JSON = {"content-type": "application/json"}
MB = 1_000_000
DEEP = b"[" * 10_000 + b"]" * 10_000
OBJECTIVES, READINGS = "POST goal /objectives", "POST metrics /readings"
CHECK_IN = "POST goal /objectives/{objective}/key-results/{key_result}/check-ins"
# Escapes that json.loads decodes to a lone surrogate: no Unicode text, no UTF-8.
SURROGATE = json.dumps(objective(owner="OWNER")).replace("OWNER", "\\ud800").encode()
SURROGATE_KEY = json.dumps(READING | {"KEY": 1}).replace("KEY", "\\udfff").encode()
DEEP_TITLE = json.dumps(objective(title="T")).replace('"T"', "[" * 900 + "]" * 900).encode()


def with_target(literal: str) -> bytes:
    """An objective whose key result's target is ``literal``, such as a bare ``NaN``: Python's
    parser takes it, JSON has no such number."""
    body = json.dumps(objective(key_results=[key_result(target=123456)]))
    return body.replace("123456", literal).encode()


HOSTILE = {
    # huge bodies, refused before they are parsed, and a batch over its count
    "20 MB objective": hostile(
        OBJECTIVES, "413 larger than", json=objective(description="x" * 20 * MB)
    ),
    "100k readings, 13 MB": hostile(READINGS, "413 larger than", json=[READING] * 100_000),
    "100k empty readings": hostile(
        READINGS, "422 body batch_too_large", says="at most 10000", json=[{}] * 100_000
    ),
    # deep nesting: deeper than the parser goes, and deep inside a field
    "10,000 nested arrays": hostile(
        OBJECTIVES, "422 body.0 json_invalid", says="nested too deeply", content=DEEP, headers=JSON
    ),
    "10,000 nested arrays of readings": hostile(
        READINGS, "422 body.0 json_invalid", content=DEEP, headers=JSON
    ),
    "900 nested arrays as a title": hostile(
        OBJECTIVES, "422 body.title string_type", content=DEEP_TITLE, headers=JSON
    ),
    # not JSON, or not sent as JSON
    "invalid JSON": hostile(
        OBJECTIVES, "422 body.1 json_invalid", content=b"{title: 1}", headers=JSON
    ),
    "invalid UTF-8": hostile(
        OBJECTIVES,
        "422 body.11 json_invalid",
        says="not UTF-8",
        content=b'{"title": "\xff\xfe"}',
        headers=JSON,
    ),
    "empty body": hostile(OBJECTIVES, "422 body missing", content=b"", headers=JSON),
    "text/plain": hostile(
        OBJECTIVES,
        "415 header.content-type unsupported_media_type",
        content=json.dumps(objective()).encode(),
        headers={"content-type": "text/plain"},
    ),
    "no content-type": hostile(
        READINGS,
        "415 header.content-type unsupported_media_type",
        content=json.dumps(READING).encode(),
    ),
    "form-encoded check-in": hostile(
        CHECK_IN,
        "415 header.content-type unsupported_media_type",
        content=b"value=3",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    "NaN target": hostile(
        OBJECTIVES,
        "422 body.key_results.0.target finite_number",
        content=with_target("NaN"),
        headers=JSON,
    ),
    "-Infinity target": hostile(
        OBJECTIVES,
        "422 body.key_results.0.target finite_number",
        content=with_target("-Infinity"),
        headers=JSON,
    ),
    "NaN reading": hostile(
        READINGS,
        "422 body reading_rejected",
        says="value: Input should be a finite number",
        content=json.dumps(READING).replace('"value": 3', '"value": NaN').encode(),
        headers=JSON,
    ),
    "unknown field": hostile(
        OBJECTIVES, "422 body.colour extra_forbidden", json=objective(colour="red")
    ),
    # unicode that is no text, or no name
    "lone surrogate in an owner": hostile(
        OBJECTIVES, "422 body.owner string_unicode", content=SURROGATE, headers=JSON
    ),
    "lone surrogate as a field name": hostile(
        READINGS, "422 body.\\udfff string_unicode", content=SURROGATE_KEY, headers=JSON
    ),
    "NUL in an owner": hostile(
        OBJECTIVES, "422 body.owner string_pattern_mismatch", json=objective(owner="da\x00na")
    ),
    "line break in a key result title": hostile(
        OBJECTIVES,
        "422 body.key_results.0.title string_pattern_mismatch",
        json=objective(key_results=[key_result(title="a\nb")]),
    ),
    "NUL in a KPI name": hostile(
        "PUT metrics /kpis/signups",
        "422 body.name string_pattern_mismatch",
        json=KPI | {"name": "sign\x00ups"},
    ),
    "emoji in a KPI key": hostile(
        "PUT metrics /kpis/sign%F0%9F%9A%80ups", "422 path.key string_pattern_mismatch", json=KPI
    ),
    # weights: negative, zero everywhere, not numbers
    "negative objective weight": hostile(
        OBJECTIVES, "422 body.weight greater_than_equal", json=objective(weight=-1)
    ),
    "negative key result weight": hostile(
        OBJECTIVES,
        "422 body.key_results.0.weight greater_than_equal",
        json=objective(key_results=[key_result(weight=-0.5)]),
    ),
    "every key result weighs zero": hostile(
        OBJECTIVES,
        "422 body.key_results positive_weight_required",
        json=objective(key_results=[key_result(weight=0), key_result(weight=0.0)]),
    ),
    "true as a weight": hostile(
        OBJECTIVES, "422 body.weight float_type", json=objective(weight=True)
    ),
    "false as a KPI warning": hostile(
        "PUT metrics /kpis/signups", "422 body.warning float_type", json=KPI | {"warning": False}
    ),
    # periods that end before they start, or never were
    "period that ends before it starts": hostile(
        OBJECTIVES,
        "422 body.period period_invalid",
        json=objective(period={"start": "2026-12-01", "end": "2026-01-31"}),
    ),
    "redefined to end before it starts": hostile(
        "PUT goal /objectives/{objective}",
        "422 body.period period_invalid",
        json=objective(period={"start": "2026-12-01", "end": "2026-11-30"}),
    ),
    "fifth quarter": hostile(
        OBJECTIVES, "422 body.period period_invalid", json=objective(period="2026-Q5")
    ),
    "year zero": hostile(
        OBJECTIVES, "422 body.period period_invalid", json=objective(period="0000")
    ),
    # key results out of range
    "no key result": hostile(
        OBJECTIVES, "422 body.key_results at_least_one_key_result", json=objective(key_results=[])
    ),
    "51 key results": hostile(
        OBJECTIVES, "422 body.key_results too_long", json=objective(key_results=[key_result()] * 51)
    ),
    "target equal to baseline": hostile(
        OBJECTIVES,
        "422 body.key_results.0.target baseline_equals_target",
        json=objective(key_results=[key_result(target=8)]),
    ),
    "confidence 11": hostile(
        CHECK_IN, "422 body.confidence less_than_equal", json={"value": 6, "confidence": 11}
    ),
    "a check-in of nothing": hostile(CHECK_IN, "422 body.value empty_check_in", json={}),
    "a check-in on no key result": hostile(
        "POST goal /objectives/{objective}/key-results/nope/check-ins",
        "404 no key result nope",
        json={"value": 6},
    ),
    # path parameters that are not ids
    "objective id not a UUID": hostile(
        "GET goal /objectives/12%20OR%201=1", "422 path.objective_id uuid_parsing"
    ),
    "archive an id not a UUID": hostile(
        "POST goal /objectives/0x1F/archive", "422 path.objective_id uuid_parsing"
    ),
    "a path that climbs out": hostile(
        "POST goal /objectives/..%2F..%2Fetc/archive", "404 Not Found"
    ),
    "KPI key with a capital": hostile(
        "GET metrics /kpis/NewCustomers", "422 path.key string_pattern_mismatch"
    ),
    # instants that are not timestamps, or naive
    "as_of yesterday": hostile(
        "GET goal /objectives/{objective}?as_of=yesterday", "422 query.as_of datetime_iso"
    ),
    "as_of in Unix time": hostile(
        "GET goal /objectives/{objective}?as_of=1767225600", "422 query.as_of datetime_iso"
    ),
    "naive as_of": hostile(
        "GET metrics /kpis/new_customers?as_of=2026-11-02T10:00:00",
        "422 query.as_of timezone_aware",
    ),
    "naive since": hostile(
        "GET metrics /kpis/new_customers/readings?since=2026-11-01",
        "422 query.since timezone_aware",
    ),
    "until in Unix time": hostile(
        "GET metrics /kpis/new_customers/readings?until=0.5", "422 query.until datetime_iso"
    ),
    "as_of on no calendar": hostile(
        "GET alignment /tree?as_of=2026-13-45T99:00:00Z",
        "422 query.as_of datetime_from_date_parsing",
    ),
    "naive as_of of a score": hostile(
        "GET alignment /objectives/{objective}/score?as_of=2026-11-02T10:00:00",
        "422 query.as_of timezone_aware",
    ),
    "naive reading": hostile(
        READINGS,
        "422 body reading_rejected",
        says="observed_at: Input should have timezone info",
        json=READING | {"observed_at": "2026-11-02T10:00"},
    ),
    "reading in no UTC time": hostile(
        "POST metrics /kpis/new_customers/readings",
        "422 body reading_rejected",
        says="observed_at: out of range",
        json=READING | {"observed_at": "0001-01-01T00:00:00+14:00"},
    ),
    "unknown gap kind": hostile("GET alignment /gaps?kind=everything", "422 query.kind enum"),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_request_is_refused_precisely_and_changes_nothing(
    case: Hostile, apps: dict[str, FastAPI], known: dict[str, str]
) -> None:
    before = await stored(apps, known)
    answer = await send(apps[case.service], case.method, case.path.format(**known), **case.body)

    assert answer.status_code == case.status, answer.text[:500]
    detail = answer.json()["detail"]
    if isinstance(detail, list):
        wanted = {"loc": list(case.loc), "type": case.rule, "says": True}
        found = [
            {"loc": error["loc"], "type": error["type"], "says": case.says in error["msg"]}
            for error in detail
        ]
        assert wanted in found, detail
    else:
        assert case.rule in detail
    assert await stored(apps, known) == before


async def test_a_body_without_length_is_cut_off_at_the_limit(
    apps: dict[str, FastAPI], known: dict[str, str]
) -> None:
    before = await stored(apps, known)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse early
        nonlocal sent
        for _ in range(40):
            sent += MB
            yield b" " * MB

    answer = await send(apps["metrics"], "POST", "/readings", content=chunks(), headers=JSON)

    assert answer.status_code == 413, answer.text[:500]
    assert "larger than" in answer.json()["detail"]
    assert sent < 10 * MB  # refused as the limit passed, not after 40 MB
    assert await stored(apps, known) == before


async def test_names_in_any_script_are_kept_as_sent(apps: dict[str, FastAPI]) -> None:
    # Emoji (with joiners and flags), right-to-left text and bidi marks are text: accepted.
    title = "🚀 نمو الإيرادات — 👩‍💻 🇫🇷"
    owner = "zoë.דנה‏"
    created = await send(
        apps["goal"],
        "POST",
        "/objectives",
        json=objective(title=title, owner=owner, key_results=[key_result(title=title)]),
    )
    assert created.status_code == 201, created.text
    read = await send(apps["goal"], "GET", f"/objectives/{created.json()['objective']['id']}")
    assert read.status_code == 200, read.text
    assert (read.json()["objective"]["title"], read.json()["objective"]["owner"]) == (title, owner)
    assert read.json()["key_results"][0]["title"] == title

    defined = await send(apps["metrics"], "PUT", "/kpis/nps", json=KPI | {"name": title})
    assert defined.status_code == 201, defined.text
    assert defined.json()["definition"]["name"] == title
