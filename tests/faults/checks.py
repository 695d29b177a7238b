"""What the driver checks once the system has settled after the faults:

- every unique reading recorded exactly once, in the metrics store and on ``metrics.events``;
- every objective in its last state, in the goal service (and consistent with its own
  history) and in the alignment service;
- the alignment scores equal a from-scratch recomputation over the full history of the
  topics (the service's own rules run offline on a scratch store), and the driver's own
  arithmetic over the readings and check-ins it sent;
- nothing dead-lettered (every message sent was valid).
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts import ALL_TOPICS, METRICS_EVENTS, dlq_topic, parse_period
from services.alignment.api import build_tree, objective_view
from services.alignment.rebuild import rebuild_from_topics
from services.alignment.scoring import (
    clamp,
    in_window,
    milestone_progress,
    progress,
    weighted_mean,
)
from tests.faults.journal import Finding
from tests.faults.stack import Stack
from tests.faults.workload import KPIS, ObjectivePlan, Reading, comparable_definition
from tests.support import read_topic

READINGS_STORED = "every unique reading recorded exactly once in the metrics store"
READINGS_PUBLISHED = "every unique reading published once on metrics.events (KPIRecorded)"
OBJECTIVES_IN_GOAL = "every objective in its last state in the goal service"
OBJECTIVES_IN_ALIGNMENT = "every objective in its last state in the alignment service"
SCORES_REPLAYED = "alignment scores equal a from-scratch recomputation over the full history"
SCORES_COMPUTED = "alignment values and scores equal the driver's arithmetic over what it sent"
NOTHING_DEAD_LETTERED = "nothing dead-lettered"
#: The readings endpoint answers at most this many per request.
PAGE = 10_000
#: What depends on the instant of evaluation, which differs between the live service and a
#: replay: pace (an objective's ``pace``, a key result's ``status``) and the lineage of sums,
#: which cites the readings folded in by each evaluation (batches differ).
OBJECTIVE_INSTANT_FIELDS = frozenset({"as_of", "expected", "pace"})
KEY_RESULT_INSTANT_FIELDS = frozenset({"as_of", "expected", "status", "lineage"})
#: The definition fields of an objective and of a key result that the alignment service shows.
OBJECTIVE_FIELDS = (
    "title",
    "owner",
    "org_unit",
    "level",
    "period",
    "type",
    "weight",
    "parent_id",
    "parent_key_result_id",
    "status",
)
KEY_RESULT_FIELDS = ("id", "title", "kind", "kpi", "aggregation", "baseline", "target", "weight")


def unique_readings(readings: Sequence[Reading]) -> dict[tuple[str, str], Reading]:
    return {(r.kpi, r.reading_id): r for r in readings}


def readings_in_store(stack: Stack, readings: Sequence[Reading]) -> Finding:
    """The metrics store (its event log, read through ``GET /kpis/{key}/readings``) holds
    each unique reading once, with the value sent; its KPI counts agree."""
    expected = unique_readings(readings)
    metrics = stack.api("metrics")
    stored: Counter[tuple[str, str]] = Counter()
    evidence: list[str] = []
    for key in KPIS:
        since: str | None = None
        while True:
            page = metrics.get(
                f"/kpis/{key}/readings", limit=str(PAGE), **({"since": since} if since else {})
            )
            for item in page:
                pair = (key, item["reading_id"])
                stored[pair] += 1
                sent = expected.get(pair)
                if sent is not None and sent.value != item["value"]:
                    evidence.append(f"{pair}: value {item['value']}, sent {sent.value}")
            if len(page) < PAGE:
                break
            # Observed times are unique per KPI (minutes): the next page starts after this one.
            last = datetime.fromisoformat(page[-1]["observed_at"])
            since = (last + timedelta(seconds=1)).astimezone(UTC).isoformat()
    counted = sum(kpi["readings"] for kpi in metrics.get("/kpis"))
    missing = set(expected) - set(stored)
    extra = set(stored) - set(expected)
    twice = [pair for pair, times in stored.items() if times > 1]
    evidence += [f"missing {pair}" for pair in sorted(missing)[:10]]
    evidence += [f"never sent {pair}" for pair in sorted(extra)[:10]]
    evidence += [f"recorded {stored[pair]} times: {pair}" for pair in sorted(twice)[:10]]
    if counted != len(expected):
        evidence.append(f"the KPIs count {counted} readings")
    return Finding(
        READINGS_STORED,
        passed=not evidence,
        expected=f"{len(expected)} unique readings (of {len(readings)} messages sent), each once",
        found=(
            f"{sum(stored.values())} recorded ({len(missing)} missing, {len(extra)} unknown, "
            f"{len(twice)} twice); KPI counts add up to {counted}"
        ),
        evidence=evidence,
    )


def readings_published(stack: Stack, readings: Sequence[Reading]) -> Finding:
    """``metrics.events`` carries one ``KPIRecorded`` per unique reading: copies (the relay
    republishing) keep the event id, so a reading id under two event ids was recorded twice."""
    expected = unique_readings(readings)
    events: dict[tuple[str, str], set[str]] = defaultdict(set)
    records = 0
    for record in read_topic(stack.bootstrap, METRICS_EVENTS):
        event = json.loads(record.value or b"{}")
        if event["event_type"] == "KPIRecorded":
            pair = (event["payload"]["kpi"], event["payload"]["reading_id"])
            records += 1
            events[pair].add(event["event_id"])
    missing = set(expected) - set(events)
    extra = set(events) - set(expected)
    twice = [pair for pair, ids in events.items() if len(ids) > 1]
    return Finding(
        READINGS_PUBLISHED,
        passed=not missing and not extra and not twice,
        expected=f"{len(expected)} reading ids, one event id each",
        found=(
            f"{len(events)} reading ids in {records} records ({records - len(events)} republished "
            f"copies); {len(missing)} missing, {len(extra)} unknown, {len(twice)} under two "
            "event ids"
        ),
        evidence=[f"missing {pair}" for pair in sorted(missing)[:10]]
        + [f"twice {pair}" for pair in sorted(twice)[:10]],
    )


def objectives_in_goal(stack: Stack, plans: Sequence[ObjectivePlan]) -> Finding:
    """``GET /objectives/{id}`` equals the last change acknowledged (or found after a lost
    answer), with the last check-in of each key result; the catalogue lists exactly those
    objectives; and each objective equals the fold of its own history."""
    goal = stack.api("goal")
    evidence: list[str] = []
    for plan in plans:
        view = goal.get(f"/objectives/{plan.objective_id}")
        evidence += differences(
            f"{plan.token} (found, expected)",
            comparable_definition(view["objective"]),
            plan.expected(),
        )
        for key_result in view["key_results"]:
            sent = plan.check_ins.get(key_result["id"])
            stored = key_result.get("check_in")
            if (sent or {}).get("comment") != (stored or {}).get("comment"):
                evidence.append(
                    f"{plan.token} key result {key_result['id']}: check-in {stored}, sent {sent}"
                )
        history = goal.get(f"/objectives/{plan.objective_id}/history")
        folded: dict[str, Any] = {}
        for entry in history:
            if entry["event_type"] == "ObjectiveSet":
                folded = {**entry["payload"], "status": folded.get("status", "active")}
            elif entry["event_type"] == "ObjectiveArchived":
                folded["status"] = "archived"
        evidence += differences(
            f"{plan.token} (history folded, shown)",
            comparable_definition(folded),
            comparable_definition(view["objective"]),
        )
        if len(history) != view["version"]:
            evidence.append(
                f"{plan.token}: {len(history)} changes in history, version {view['version']}"
            )
    listed = {definition["id"]: definition for definition in goal.get("/objectives")}
    known = {plan.objective_id for plan in plans}
    unknown = set(listed) - known
    evidence += [f"listed but never created by the driver: {listed[i]['title']}" for i in unknown]
    evidence += [f"not listed: {plan.token}" for plan in plans if plan.objective_id not in listed]
    for plan in plans:
        if plan.objective_id in listed:
            evidence += differences(
                f"{plan.token} (listed, expected)",
                comparable_definition(listed[plan.objective_id]),
                plan.expected(),
            )
    archived = sum(plan.archived for plan in plans)
    return Finding(
        OBJECTIVES_IN_GOAL,
        passed=not evidence,
        expected=f"{len(plans)} objectives ({archived} archived) as last acknowledged",
        found=f"{len(listed)} listed, {len(evidence)} differences",
        evidence=evidence,
    )


def objectives_in_alignment(stack: Stack, plans: Sequence[ObjectivePlan]) -> Finding:
    """The alignment service holds every objective's last definition (it came through
    ``goal.events`` across the faults)."""
    evidence = []
    for plan in plans:
        view = _alignment_view(stack, plan)
        if view is None:
            evidence.append(f"{plan.token} unknown to the alignment service")
            continue
        evidence += differences(
            f"{plan.token} (held, expected)", _shown(view), _shown(plan.expected())
        )
    differ = len({line.split(" ", 1)[0] for line in evidence})
    return Finding(
        OBJECTIVES_IN_ALIGNMENT,
        passed=not evidence,
        expected=f"{len(plans)} objectives as last acknowledged",
        found=f"{len(plans) - differ} equal, {differ} differ",
        evidence=evidence,
    )


def scores_equal_replay(stack: Stack, work_dir: Path) -> Finding:
    """The live alignment service's scores, tree and open gaps equal those of a from-scratch
    recomputation: the alignment rules run offline over the whole of ``goal.events`` and
    ``metrics.events`` on an empty scratch store (``okr replay --from-kafka``)."""
    alignment = stack.api("alignment")
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        replayed = asyncio.run(
            rebuild_from_topics(
                {"bootstrap_servers": stack.bootstrap}, datetime.now(UTC), Path(scratch)
            )
        )
        try:
            tracks = replayed.tracks()
            offline = {
                track.objective_id: _scores(objective_view(track).model_dump(mode="json"))
                for track in tracks
            }
            offline_tree = _scores_tree(
                [node.model_dump(mode="json") for node in build_tree(tracks, None, None)]
            )
            offline_gaps = {gap["gap_id"] for gap in replayed.open_gaps()}
        finally:
            replayed.close()
    live = {
        objective_id: _scores(alignment.get(f"/objectives/{objective_id}/score"))
        for objective_id in offline
    }
    live_tree = _scores_tree(alignment.get("/tree"))
    live_gaps = {gap["gap_id"] for gap in alignment.get("/gaps")}
    differ = sorted(o for o in offline if offline[o] != live[o])
    evidence = [
        line
        for o in differ
        for line in differences(f"{live[o]['title']} (live, replay)", live[o], offline[o])
    ]
    if live_tree != offline_tree:
        evidence.append("the trees differ")
    if live_gaps != offline_gaps:
        evidence.append(
            f"gaps only live: {sorted(live_gaps - offline_gaps)}, only replayed: "
            f"{sorted(offline_gaps - live_gaps)}"
        )
    key_results = sum(len(view["key_results"]) for view in offline.values())
    return Finding(
        SCORES_REPLAYED,
        passed=not evidence and bool(offline),
        expected=(
            f"{len(offline)} objectives, {key_results} key results and {len(offline_gaps)} open "
            "gaps as replayed from the topics"
        ),
        found=f"{len(offline) - len(differ)} objectives equal, tree "
        f"{'equal' if live_tree == offline_tree else 'differs'}, gaps "
        f"{'equal' if live_gaps == offline_gaps else 'differ'}",
        evidence=evidence,
    )


def scores_equal_arithmetic(
    stack: Stack, plans: Sequence[ObjectivePlan], readings: Sequence[Reading]
) -> Finding:
    """Each active objective's score and its key results' values and scores equal the
    driver's own arithmetic over the readings and check-ins it sent (SPEC section 2)."""
    by_kpi: dict[str, list[Reading]] = defaultdict(list)
    for reading in unique_readings(readings).values():
        by_kpi[reading.kpi].append(reading)
    active = {plan.objective_id: plan for plan in plans if not plan.archived}
    scores: dict[str, float] = {}

    def key_result_value(plan: ObjectivePlan, kr: dict[str, Any]) -> float | None:
        if kr["kind"] == "kpi":
            period = parse_period(plan.body["period"])
            window = [
                r for r in by_kpi[kr["kpi"]] if in_window(r.observed_at, period.start, period.end)
            ]
            return aggregate(kr["aggregation"], window)
        if kr["kind"] == "metric":
            value: float | None = plan.check_ins.get(kr["id"], {}).get("value")
            return value
        if kr["kind"] == "milestone":
            check_in = plan.check_ins.get(kr["id"], {})
            return milestone_progress(
                check_in.get("done"), kr.get("checklist", []), check_in.get("checklist_done")
            )
        children = [
            child
            for child in active.values()
            if child.body.get("parent_id") == plan.objective_id
            and child.body.get("parent_key_result_id") == kr["id"]
        ]
        mean = weighted_mean((objective_score(child), child.body["weight"]) for child in children)
        return mean if mean is not None else 0.0

    def key_result_score(kr: dict[str, Any], value: float | None) -> float:
        if kr["kind"] in ("kpi", "metric"):
            return (
                clamp(progress(value, kr["baseline"], kr["target"])) if value is not None else 0.0
            )
        return clamp(value or 0.0)

    def objective_score(plan: ObjectivePlan) -> float:
        assert plan.objective_id is not None
        if plan.objective_id not in scores:
            krs = plan.body["key_results"]
            scores[plan.objective_id] = (
                weighted_mean(
                    (key_result_score(kr, key_result_value(plan, kr)), kr["weight"]) for kr in krs
                )
                or 0.0
            )
        return scores[plan.objective_id]

    evidence = []
    compared = 0
    for plan in active.values():
        view = _alignment_view(stack, plan)
        if view is None:
            evidence.append(f"{plan.token} unknown to the alignment service")
            continue
        live = {kr["id"]: kr for kr in view["key_results"]}
        for kr in plan.body["key_results"]:
            value = key_result_value(plan, kr)
            found = live.get(kr["id"], {})
            compared += 1
            if not (
                _close(found.get("value"), value)
                and _close(found.get("score"), key_result_score(kr, value))
            ):
                evidence.append(
                    f"{plan.token} {kr['title']}: value {found.get('value')} score "
                    f"{found.get('score')}, computed {value} and {key_result_score(kr, value)}"
                )
        if not _close(view["score"], objective_score(plan)):
            evidence.append(
                f"{plan.token}: score {view['score']}, computed {objective_score(plan)}"
            )
    return Finding(
        SCORES_COMPUTED,
        passed=not evidence,
        expected=f"{len(active)} active objectives, {compared} key results",
        found=f"{len(evidence)} differences",
        evidence=evidence,
    )


def nothing_dead_lettered(stack: Stack) -> Finding:
    """Every message the driver and the services sent was valid: the DLQs stay empty."""
    counts = {
        dlq_topic(topic): len(read_topic(stack.bootstrap, dlq_topic(topic))) for topic in ALL_TOPICS
    }
    return Finding(
        NOTHING_DEAD_LETTERED,
        passed=not any(counts.values()),
        expected="every DLQ topic empty",
        found=", ".join(f"{topic} {count}" for topic, count in counts.items()),
    )


def differences(subject: str, found: Any, expected: Any, path: str = "") -> list[str]:
    """Where two JSON-like values differ, one line per differing leaf: ``subject path:
    found != expected``."""
    if isinstance(found, dict) and isinstance(expected, dict):
        return [
            line
            for key in sorted(set(found) | set(expected))
            for line in differences(subject, found.get(key), expected.get(key), f"{path}.{key}")
        ]
    if isinstance(found, list) and isinstance(expected, list) and len(found) == len(expected):
        return [
            line
            for index, (one, other) in enumerate(zip(found, expected, strict=True))
            for line in differences(subject, one, other, f"{path}[{index}]")
        ]
    return [] if found == expected else [f"{subject} {path or '.'}: {found!r} != {expected!r}"]


def aggregate(aggregation: str, window: Sequence[Reading]) -> float | None:
    """A key result's value from its KPI's readings in the period (ties broken by reading
    id, as the alignment service does)."""
    if aggregation == "count":
        return float(len(window))
    if not window:
        return None
    if aggregation == "sum":
        return math.fsum(r.value for r in window)
    if aggregation == "avg":
        return math.fsum(r.value for r in window) / len(window)
    if aggregation == "min":
        return min(window, key=lambda r: (r.value, r.reading_id)).value
    if aggregation == "max":
        return max(window, key=lambda r: (r.value, r.reading_id)).value
    return max(window, key=lambda r: (r.observed_at, r.reading_id)).value


def _close(found: float | None, computed: float | None) -> bool:
    if found is None or computed is None:
        return found is computed
    return math.isclose(found, computed, rel_tol=1e-9, abs_tol=1e-9)


def _alignment_view(stack: Stack, plan: ObjectivePlan) -> dict[str, Any] | None:
    """The alignment service's view of an objective, None if it does not know it."""
    answer = stack.api("alignment").request("GET", f"/objectives/{plan.objective_id}/score")
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    view: dict[str, Any] = answer.json()
    return view


def _scores(view: dict[str, Any]) -> dict[str, Any]:
    """An objective's view without what depends on the instant it was evaluated."""
    return {
        **{
            k: v
            for k, v in view.items()
            if k not in OBJECTIVE_INSTANT_FIELDS | {"key_results", "children"}
        },
        "key_results": [
            {k: v for k, v in kr.items() if k not in KEY_RESULT_INSTANT_FIELDS}
            for kr in view["key_results"]
        ],
    }


def _scores_tree(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**_scores(node), "children": _scores_tree(node.get("children", []))} for node in tree]


def _shown(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition fields the alignment service shows, from its view or a comparable
    definition (both name them alike)."""
    return {
        **{name: definition[name] for name in OBJECTIVE_FIELDS},
        "key_results": [
            {name: kr[name] for name in KEY_RESULT_FIELDS} for kr in definition["key_results"]
        ],
    }
