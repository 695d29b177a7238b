"""The web console in Debian's Chromium, driven by Playwright, against the real stack: Apache
Kafka, the three services with authentication on, the demo loaded, and the console. Every
page is checked with axe-core (no serious or critical violation) and photographed into
``var/screenshots``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect, sync_playwright

from contracts import KPI_READINGS
from services import demo
from services.shared.auth import TOKEN_ENTRIES, Role, new_token
from tests.support import ROOT, ServiceProcess, apache_kafka, metric_value, unavailable, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "tests/e2e/axe/axe.min.js"
SCREENSHOTS = ROOT / "var/screenshots"
WRITER_TOKEN, WRITER = new_token("wanda", list(Role))
READER_TOKEN, READER = new_token("rita", [Role.reader])
HOSTILE = "<script>alert(1)</script>"
DEMO_OBJECTIVES = 8
PACE = re.compile("^(achieved|on track|at risk|off track)$")


@dataclass
class Stack:
    goal: ServiceProcess
    metrics: ServiceProcess
    alignment: ServiceProcess
    web: ServiceProcess
    bootstrap: str

    def api(self, service: str, method: str, path: str, body: Any = None) -> Any:
        url = getattr(self, service).url + path
        answer = httpx.request(
            method, url, json=body, headers={"Authorization": f"Bearer {WRITER_TOKEN}"}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()

    def objective_id(self, title: str) -> str:
        objectives = self.api("goal", "GET", "/objectives")
        return str(next(o["id"] for o in objectives if o["title"] == title))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CHROMIUM.exists():
        unavailable("Chromium is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("web")
    kafka = apache_kafka(root / "kafka")
    entries = TOKEN_ENTRIES.dump_json([WRITER, READER]).decode()
    auth = {"OKR_AUTH_DISABLED": "false", "OKR_AUTH_TOKENS": entries}
    processes: dict[str, ServiceProcess] = {}
    try:
        for name in ("goal", "metrics", "alignment"):
            (root / name).mkdir()
            processes[name] = ServiceProcess(name, root / name, kafka.bootstrap_servers)
            processes[name].start(extra_env=auth)
        demo.load_kpis(processes["metrics"].url, token=WRITER_TOKEN)
        demo.load_objectives(processes["goal"].url, token=WRITER_TOKEN)
        (root / "web").mkdir()
        urls = {f"OKR_{name.upper()}_URL": processes[name].url for name in processes}
        processes["web"] = ServiceProcess("web", root / "web", kafka.bootstrap_servers)
        processes["web"].start(extra_env=auth | urls)
        stack = Stack(bootstrap=kafka.bootstrap_servers, **processes)
        wait_for(lambda: demo_scored(stack), within=90, what="the demo objectives scored")
        yield stack
    finally:
        for process in reversed(processes.values()):
            process.stop()
        kafka.stop()


def demo_scored(stack: Stack) -> bool:
    tree = stack.api("alignment", "GET", "/tree")
    nodes = list(tree)
    found = 0
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("children", []))
        found += node["score"] is not None
    return found == DEMO_OBJECTIVES


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


def signed_in(browser: Browser, stack: Stack, token: str) -> tuple[BrowserContext, Page]:
    # CSP bypassed only so that the test can inject axe-core; the console's pages run under it.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{stack.web.url}/signin")
    page.get_by_label("Bearer token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.web.url}/")
    return context, page


@pytest.fixture
def writer(browser: Browser, stack: Stack) -> Iterator[Page]:
    context, page = signed_in(browser, stack, WRITER_TOKEN)
    yield page
    context.close()


def accessible(page: Page, name: str) -> None:
    """No serious or critical axe-core violation on the page; and its screenshot."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{name}: {bad}"


def produce_reading(stack: Stack, kpi: str, value: float) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        try:
            reading = {
                "kpi": kpi,
                "value": value,
                "source": "browser-test",
                "observed_at": datetime.now(UTC).isoformat(),
            }
            await producer.send_and_wait(KPI_READINGS, json.dumps(reading).encode(), kpi.encode())
        finally:
            await producer.stop()

    # Playwright's own event loop runs in this thread: the producer gets a thread of its own.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, send()).result()


def test_the_tree_shows_the_demo_okrs_after_signing_in(writer: Page, stack: Stack) -> None:
    expect(writer.get_by_text("Signed in as")).to_contain_text("wanda")
    expect(writer.locator(".objective")).to_have_count(8)
    expect(writer.get_by_role("link", name="Reduce churn from 8% to 5%")).to_be_visible()
    company = writer.locator(
        "#objective-"
        + stack.objective_id(
            demo.company_objective(demo.DemoPeriods.around(datetime.now(UTC).date()))["title"]
        )
    )
    # Pace in words as well as in colour.
    expect(company.locator(".objective-line .pace")).to_have_text(PACE)
    accessible(writer, "tree")


def test_a_reading_moves_the_key_results_bar_and_score_without_a_reload(
    writer: Page, stack: Stack
) -> None:
    expect(writer.locator("body")).to_have_attribute("data-live", "open", timeout=15_000)
    row = writer.locator("tr.key-result", has_text="Reduce churn from 8% to 5%")
    expect(row.locator("td.score")).to_have_text("60%")
    writer.evaluate("window.notReloaded = true")
    produce_reading(stack, "churn_rate", 5.6)  # from 8 to 5: progress 0.8
    expect(row.locator("td.score")).to_have_text("80%", timeout=15_000)
    expect(row.locator("progress")).to_have_attribute("value", "80")
    assert writer.evaluate("window.notReloaded") is True
    # What the console's /metrics tells an operator: this page's stream, the feed's news.
    assert metric_value(stack.web.url, "okr_web_sse_connections") >= 1
    assert metric_value(stack.web.url, "okr_web_live_events_total") >= 1


def test_an_objective_with_a_kpi_key_result_is_created_through_the_form(
    writer: Page, stack: Stack
) -> None:
    writer.goto(f"{stack.web.url}/objectives/new")
    writer.get_by_label("Title", exact=True).first.fill("Keep churn down all year")
    writer.get_by_label("Owner (one accountable person)").fill("kim.cs")
    writer.get_by_label("Org unit").fill("customer-success")
    first = writer.locator("fieldset", has_text="Key result 1")
    first.get_by_label("Title", exact=True).fill("Churn at 5%")
    first.get_by_label("Kind", exact=True).select_option("kpi")
    first.get_by_label("KPI (kind kpi)").fill("churn_rate")
    first.get_by_label("Aggregation of the KPI's readings (kind kpi)").select_option("latest")
    first.get_by_label("Baseline", exact=True).fill("8")
    first.get_by_label("Target", exact=True).fill("five")
    # While the form is filled in, htmx asks for the hygiene warnings: one key result is few.
    expect(writer.locator("#hygiene")).to_contain_text("1 key results: 3 to 5")
    writer.get_by_role("button", name="Save").click()
    error = writer.locator("#f-key_results-0-target-error")
    expect(error).to_contain_text("number")
    expect(first.get_by_label("Target", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(writer.get_by_text("keep an objective focused")).to_be_visible()  # 1 key result
    accessible(writer, "new-objective-with-an-error")
    first.get_by_label("Target", exact=True).fill("5")
    writer.get_by_role("button", name="Save").click()
    expect(writer.get_by_role("heading", level=1)).to_have_text("Keep churn down all year")
    expect(writer.locator("tr.key-result", has_text="Churn at 5%")).to_contain_text("churn_rate")
    accessible(writer, "objective")


def test_a_check_in_shows_on_the_objective(writer: Page, stack: Stack) -> None:
    objective_id = stack.objective_id("Boost market presence by year-end")
    writer.goto(f"{stack.web.url}/objectives/{objective_id}")
    writer.get_by_text("Check in on “Launch 3 new products”").click()
    form = writer.locator("details", has_text="Launch 3 new products")
    form.get_by_label("Value now (products)").fill("3")
    form.get_by_label("Confidence, 0 to 10").fill("9")
    form.get_by_label("Comment").fill("shipped the third")
    form.get_by_role("button", name="Check in").click()
    row = writer.locator("tr.key-result", has_text="Launch 3 new products")
    expect(row.locator(".check-in")).to_contain_text("confidence 9/10")
    expect(row.locator(".check-in")).to_contain_text("shipped the third")
    expect(writer.locator(".notices")).to_contain_text("Checked in")


def test_the_key_result_charts_draw(writer: Page, stack: Stack) -> None:
    objective_id = stack.objective_id("Improve customer loyalty")
    view = stack.api("goal", "GET", f"/objectives/{objective_id}")
    churn = next(kr for kr in view["key_results"] if kr["kpi"] == "churn_rate")
    writer.goto(f"{stack.web.url}/objectives/{objective_id}/key-results/{churn['id']}")
    for chart in ("#score-chart", "#readings-chart"):
        expect(writer.locator(chart)).to_have_attribute("data-drawn", "true")
        expect(writer.locator(f"{chart} canvas")).to_have_count(1)
    expect(writer.locator("table.lineage")).to_contain_text("KPIRecorded")
    accessible(writer, "key-result")


def test_as_of_an_earlier_instant_the_old_target_shows(writer: Page, stack: Stack) -> None:
    created = stack.api(
        "goal",
        "POST",
        "/objectives",
        {
            "title": "Hire a data team",
            "owner": "pat.hr",
            "org_unit": "hr",
            "level": "team",
            "period": demo.DemoPeriods.around(datetime.now(UTC).date()).quarter,
            "key_results": [
                {"title": "Hire engineers", "kind": "metric", "baseline": 0, "target": 4}
            ],
        },
    )
    before = datetime.now(UTC)
    objective = created["objective"]
    objective["key_results"][0]["target"] = 6
    stack.api("goal", "PUT", f"/objectives/{objective['id']}", objective)
    page = f"{stack.web.url}/objectives/{objective['id']}"
    writer.goto(page)
    row = writer.locator("tr.key-result", has_text="Hire engineers")
    expect(row.locator(".value")).to_contain_text("of 6")
    writer.goto(f"{page}?{httpx.QueryParams({'as_of': before.isoformat()})}")
    expect(writer.locator(".past-banner")).to_contain_text("The past")
    expect(row.locator(".value")).to_contain_text("of 4")
    expect(writer.get_by_role("heading", name="Check in")).to_have_count(0)
    accessible(writer, "objective-in-the-past")


def team_objective(stack: Stack, title: str, target: float) -> dict[str, Any]:
    """A team objective of this quarter with one metric key result, set through the API."""
    created: dict[str, Any] = stack.api(
        "goal",
        "POST",
        "/objectives",
        {
            "title": title,
            "owner": "pat.hr",
            "org_unit": "hr",
            "level": "team",
            "period": demo.DemoPeriods.around(datetime.now(UTC).date()).quarter,
            "key_results": [
                {"title": "Hire engineers", "kind": "metric", "baseline": 0, "target": target}
            ],
        },
    )
    objective: dict[str, Any] = created["objective"]
    return objective


def test_the_time_travel_control_shows_the_old_target(writer: Page, stack: Stack) -> None:
    objective = team_objective(stack, "Hire a platform team", 4)
    # The control takes whole seconds: the instant looked at is the first one after the
    # objective was set, and the change has to come after it.
    then = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    wait_for(lambda: datetime.now(UTC) > then, within=5, what="a second after the objective")
    objective["key_results"][0]["target"] = 6
    stack.api("goal", "PUT", f"/objectives/{objective['id']}", objective)
    writer.goto(f"{stack.web.url}/objectives/{objective['id']}")
    row = writer.locator("tr.key-result", has_text="Hire engineers")
    expect(row.locator(".value")).to_contain_text("of 6")
    expect(writer.locator(".past-banner")).to_have_count(0)

    control = writer.get_by_role("form", name="Time travel")
    control.get_by_label("Look at the state as of (UTC)").fill(then.strftime("%Y-%m-%dT%H:%M:%S"))
    control.get_by_role("button", name="Look").click()
    writer.wait_for_url(re.compile(r"\?as_of="))
    expect(writer.locator(".past-banner")).to_contain_text("The past")
    expect(row.locator(".value")).to_contain_text("of 4")
    control.get_by_role("link", name="Back to now").click()
    expect(row.locator(".value")).to_contain_text("of 6")
    expect(writer.locator(".past-banner")).to_have_count(0)


def test_a_writer_archives_an_objective_from_its_page(writer: Page, stack: Stack) -> None:
    objective = team_objective(stack, "Hire a support team", 3)

    def in_tree() -> bool:
        return str(objective["id"]) in json.dumps(stack.api("alignment", "GET", "/tree"))

    wait_for(in_tree, what="the alignment service to have the objective")
    page = f"{stack.web.url}/objectives/{objective['id']}"
    writer.goto(page)
    writer.get_by_label("Reason to archive").fill("merged into the platform team")
    writer.get_by_role("button", name="Archive").click()
    expect(writer.locator(".notices")).to_contain_text("The objective is archived.")
    expect(writer.locator(".facts .status")).to_have_text("archived")
    expect(writer.get_by_role("button", name="Archive")).to_have_count(0)
    view = stack.api("goal", "GET", f"/objectives/{objective['id']}")
    assert view["objective"]["status"] == "archived"

    # The tree hides it once alignment has the archival; asked for, it is listed apart.
    wait_for(lambda: not in_tree(), what="the alignment service to have the archival")
    writer.goto(f"{stack.web.url}/?org_unit=hr")
    expect(writer.locator(f"#objective-{objective['id']}")).to_have_count(0)
    writer.goto(f"{stack.web.url}/?org_unit=hr&archived=true")
    archived = writer.locator(
        "section", has=writer.get_by_role("heading", name="Archived objectives")
    )
    expect(archived.get_by_role("link", name="Hire a support team")).to_be_visible()


def test_a_reader_sees_no_write_controls_and_a_write_is_refused(
    browser: Browser, stack: Stack
) -> None:
    context, page = signed_in(browser, stack, READER_TOKEN)
    objective_id = stack.objective_id("Boost market presence by year-end")
    page.goto(f"{stack.web.url}/objectives/{objective_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Boost market presence by year-end")
    expect(page.get_by_role("link", name="New objective")).to_have_count(0)
    expect(page.get_by_role("button", name="Check in")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit the objective")).to_have_count(0)
    expect(page.get_by_role("button", name="Archive")).to_have_count(0)
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    view = stack.api("goal", "GET", f"/objectives/{objective_id}")
    sent = page.request.post(
        f"{stack.web.url}/objectives/{objective_id}/key-results/"
        f"{view['key_results'][0]['id']}/check-ins",
        form={"csrf_token": csrf or "", "value": "40", "confidence": "5"},
    )
    assert sent.status == 403
    assert "Forbidden by the goal service" in sent.text()
    context.close()


def test_a_hostile_title_renders_as_text(writer: Page, stack: Stack) -> None:
    stack.api(
        "goal",
        "POST",
        "/objectives",
        {
            "title": HOSTILE,
            "owner": "mallory",
            "org_unit": "security",
            "level": "company",
            "period": demo.DemoPeriods.around(datetime.now(UTC).date()).year,
            "key_results": [{"title": HOSTILE, "kind": "milestone"}],
        },
    )
    wait_for(
        lambda: "mallory" in json.dumps(stack.api("alignment", "GET", "/tree")),
        what="the alignment service to have the objective",
    )
    dialogs: list[str] = []

    def alerted(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    writer.on("dialog", alerted)
    writer.goto(f"{stack.web.url}/?owner=mallory")
    expect(writer.get_by_role("link", name=HOSTILE).first).to_be_visible()
    assert dialogs == []


def test_a_cross_site_form_post_is_refused(writer: Page, stack: Stack) -> None:
    objective_id = stack.objective_id("Reduce the cycle time to onboard new employees")
    attack = (
        f'<form id="f" method="post" action="{stack.web.url}/objectives/{objective_id}/archive">'
        '<input name="reason" value="pwned"></form><script>f.submit()</script>'
    )
    writer.route(
        "http://attacker.test/", lambda route: route.fulfill(body=attack, content_type="text/html")
    )
    writer.goto("http://attacker.test/")
    writer.wait_for_url(f"{stack.web.url}/**")
    assert (
        stack.api("goal", "GET", f"/objectives/{objective_id}")["objective"]["status"] == "active"
    )
    # Same session, same form, but sent from another site with the page's own token too.
    csrf = writer.locator("input[name=csrf_token]").first.get_attribute("value")
    sent = writer.request.post(
        f"{stack.web.url}/objectives/{objective_id}/archive",
        form={"csrf_token": csrf or "", "reason": "pwned"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert sent.status == 403
    assert (
        stack.api("goal", "GET", f"/objectives/{objective_id}")["objective"]["status"] == "active"
    )


@pytest.mark.parametrize(
    ("name", "path"),
    [("kpis", "/kpis"), ("kpi", "/kpis/churn_rate"), ("gaps", "/gaps"), ("audit", "/audit")],
)
def test_every_other_page_is_accessible(writer: Page, stack: Stack, name: str, path: str) -> None:
    writer.goto(f"{stack.web.url}{path}")
    expect(writer.get_by_role("heading", level=1)).to_be_visible()
    accessible(writer, name)


def test_the_gaps_page_seeds_an_okr_for_an_unaddressed_kpi(writer: Page, stack: Stack) -> None:
    writer.goto(f"{stack.web.url}/gaps")
    seed = writer.get_by_role("link", name="Set an OKR for this KPI").first
    expect(seed).to_be_visible()
    seed.click()
    first = writer.locator("fieldset", has_text="Key result 1")
    expect(first.get_by_label("Kind", exact=True)).to_have_value("kpi")
    assert first.get_by_label("KPI (kind kpi)").input_value() != ""
    objective_id = stack.objective_id("Improve customer loyalty")
    writer.goto(f"{stack.web.url}/objectives/{objective_id}/history")
    expect(writer.get_by_role("heading", level=1)).to_contain_text("History of")
    expect(writer.locator("table.changes").first).to_contain_text("title")
    accessible(writer, "history")


def test_the_sign_in_page_is_accessible(browser: Browser, stack: Stack) -> None:
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(f"{stack.web.url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    accessible(page, "sign-in")
    page.get_by_label("Bearer token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not one the platform knows")
    assert "not-a-token" not in page.content()
    context.close()
