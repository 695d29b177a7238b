"""The web console's rows of ``make bench``: how long its tree page (``GET /``) takes to
render, for a tree of the demo's size and for the bench's whole tree.

The console runs as its own process against the bench's services, as ``make run`` starts it,
and a user signs in with a token of its own; the page is then asked for one request at a
time (the time one user waits, not a throughput)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import NamedTuple

import httpx

from services.shared.auth import TOKEN_ENTRIES, Role, new_token
from tests.support import ServiceProcess

#: Requests timed per page, after one untimed request that warms the connections.
REQUESTS = 100
#: The pages timed. The demo-sized tree is the bench's own, filtered to one org unit's team
#: objectives (about as many as the demo has), rather than the demo loaded into stores that
#: later stages measure; the services behind still read every objective to answer it.
PAGES = (
    ("/?org_unit=unit-0", "demo-sized: one org unit of the bench's tree"),
    ("/", "the bench's whole tree"),
)


class Row(NamedTuple):
    name: str
    value: float
    unit: str
    note: str


def signed_in(client: httpx.Client, token: str) -> None:
    """Sign in as a browser does: the form's CSRF secret, then the token posted with it."""
    form = client.get("/signin")
    form.raise_for_status()
    secret = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if secret is None:
        raise RuntimeError("the sign-in form has no CSRF token")
    answer = client.post("/signin", data={"token": token, "csrf_token": secret.group(1)})
    if answer.status_code != 303:
        raise RuntimeError(f"signing in to the console answered {answer.status_code}")


def page_times(client: httpx.Client, path: str) -> tuple[list[float], int]:
    """Seconds each of ``REQUESTS`` requests of ``path`` took, and how many objectives the
    page showed (so that the row says what was rendered)."""
    shown = client.get(path).text.count('<article class="objective"')
    latencies = []
    for _ in range(REQUESTS):
        began = time.monotonic()
        client.get(path).raise_for_status()
        latencies.append(time.monotonic() - began)
    return latencies, shown


def milliseconds(latencies: list[float], share: float) -> float:
    ranked = sorted(latencies)
    return ranked[min(int(share * len(ranked)), len(ranked) - 1)] * 1000


def console_rows(root: Path, bootstrap: str, urls: dict[str, str]) -> list[Row]:
    """Start the console against the services at ``urls`` (goal, metrics, alignment), time
    its tree page, stop it."""
    token, entry = new_token("bench", list(Role))
    env = {
        "OKR_AUTH_DISABLED": "false",
        "OKR_AUTH_TOKENS": TOKEN_ENTRIES.dump_json([entry]).decode(),
    } | {f"OKR_{name.upper()}_URL": url for name, url in urls.items()}
    (root / "web").mkdir(exist_ok=True)
    console = ServiceProcess("web", root / "web", bootstrap).start(extra_env=env)
    rows = []
    try:
        with httpx.Client(base_url=console.url, timeout=60) as client:
            signed_in(client, token)
            for path, what in PAGES:
                latencies, shown = page_times(client, path)
                note = f"GET {path}, {what}: {shown} objectives; {REQUESTS} requests one at a time"
                name = f"console tree page, {shown} objectives"
                rows.append(Row(f"{name} p50", milliseconds(latencies, 0.5), "ms", note))
                rows.append(
                    Row(f"{name} p99", milliseconds(latencies, 0.99), "ms", f"{REQUESTS} requests")
                )
    finally:
        console.stop()
    return rows
