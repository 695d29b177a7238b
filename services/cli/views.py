"""``okr tree``, ``okr gaps``, ``okr history`` and ``okr demo``, and what every subject command
(``okr objective``, ``okr kpi``) shares to ask a service and show its answer.

Each command is a thin client of one service's HTTP API: one request through ``ServiceClient``
(which sends the token and turns every failure into a one-line error), then the answer as rich
tables for a person or, with ``--json``, the service's JSON unchanged for a script. The rules
(what a valid objective or reading is) live in the services only, so the CLI never disagrees
with them: a refused request shows the service's own reason, naming the field.

What only one command needs (the alignment rules and Kafka client of ``okr replay
--from-kafka``, the demo data) is imported when that command runs: every ``okr`` start,
``--help`` included, would pay for it otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote, urlencode

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from services.cli.client import NO_RETRY, RetryPolicy, ServiceClient, describe_answer
from services.cli.context import CliError, CliSettings, JsonOption, one_line_errors, settings_of

if TYPE_CHECKING:
    from rich.tree import Tree

Service = Literal["goal", "metrics", "alignment"]
#: Reads are safe to repeat, so they ride out a service restarting under the command.
READ_RETRY = RetryPolicy(attempts=3, first_delay=0.5, max_delay=2.0)
PACE_STYLES = {
    "achieved": "bold green",
    "on_track": "green",
    "at_risk": "yellow",
    "off_track": "red",
}
HEALTH_STYLES = {"healthy": "green", "warning": "yellow", "unhealthy": "red"}
HISTORY_COLUMNS = ("version", "event_type", "occurred_at", "actor", "correlation_id", "summary")
#: A key result's field in the history's changes: ``key_results[<id>].target``.
KEY_RESULT_FIELD = re.compile(r"key_results\[(?P<id>[^\]]+)\]\.(?P<field>.+)")
SUMMARY_LIMIT = 160


# -- asking a service -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A service's successful answer: its status (201 tells "defined" from "redefined") and
    its JSON body."""

    status: int
    body: Any


def ask(
    settings: CliSettings,
    service: Service,
    method: str,
    path: str,
    *,
    query: Mapping[str, str | None] | None = None,
    body: Any = None,
) -> Answer:
    """One request to one service; raises a one-line ``CliError`` on any failure.

    Query parameters left ``None`` are not sent, so an option not given is no filter.
    """
    base_url = {
        "goal": settings.goal_url,
        "metrics": settings.metrics_url,
        "alignment": settings.alignment_url,
    }[service]
    given = {name: value for name, value in (query or {}).items() if value is not None}
    target = f"{path}?{urlencode(given)}" if given else path
    retry = READ_RETRY if method == "GET" else NO_RETRY
    with ServiceClient(service, base_url, settings.token, actor=settings.actor) as client:
        response = client.send(method, target, json_body=body, retry=retry)
    try:
        return Answer(response.status_code, response.json())
    except ValueError:
        raise CliError(
            f"the {service} service at {base_url} answered {method} {path} with a body that "
            f"is not JSON: {describe_answer(response)}"
        ) from None


def segment(value: str) -> str:
    """A path segment from user input: an id with a ``/`` or ``?`` must not change the route."""
    return quote(value, safe="")


def finite(option: str, value: float | None) -> float | None:
    """The number unchanged, or a ``CliError``: NaN and infinity are not JSON numbers."""
    if value is not None and not math.isfinite(value):
        raise CliError(f"{option} must be a finite number, not {value}")
    return value


# -- showing answers --------------------------------------------------------------------------


def emit_json(body: Any) -> None:
    """The service's JSON as it answered, for scripts (``--json``)."""
    typer.echo(json.dumps(body, indent=2))


def percent(score: Any) -> str:
    return f"{score:.0%}" if isinstance(score, int | float) else "-"


def number(value: Any) -> str:
    """A value as a person reads it: thousands separated, no trailing ``.0``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-" if value is None else str(value)
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def moment(text: Any) -> str:
    """An ISO-8601 time in UTC to the second; anything else as it came."""
    if not isinstance(text, str):
        return "-" if text is None else str(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        return text
    return f"{parsed.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def styled(value: Any, styles: Mapping[str, str]) -> Text:
    """A status word in its colour (pace, health); a missing status is a dim dash."""
    if value is None:
        return Text("-", style="dim")
    return Text(str(value), style=styles.get(str(value), ""))


def details_table(rows: Iterable[tuple[str, str | Text]], title: str | None = None) -> Table:
    """A two-column table of labelled values, for one objective or KPI."""
    table = Table(show_header=False, title=title, title_justify="left", title_style="bold")
    table.add_column("field", style="bold")
    table.add_column("value")
    for label, value in rows:
        table.add_row(label, value if isinstance(value, Text) else Text(value))
    return table


def check_in_text(check_in: Mapping[str, Any] | None) -> str:
    """A check-in in a few words: value or done, checklist, confidence, comment."""
    if not check_in:
        return "-"
    parts = []
    if check_in.get("value") is not None:
        parts.append(f"value {number(check_in['value'])}")
    if check_in.get("done") is not None:
        parts.append("done" if check_in["done"] else "not done")
    if check_in.get("checklist_done") is not None:
        parts.append(f"checklist done: {', '.join(check_in['checklist_done']) or 'none'}")
    if check_in.get("confidence") is not None:
        parts.append(f"confidence {check_in['confidence']}/10")
    if check_in.get("comment"):
        parts.append(repr(check_in["comment"]))
    return ", ".join(parts) or "-"


# -- okr tree ---------------------------------------------------------------------------------


AsOfOption = Annotated[
    str | None,
    typer.Option("--as-of", help="Answer as things were at this instant (ISO-8601 with timezone)."),
]


def tree(
    ctx: typer.Context,
    period: Annotated[
        str | None, typer.Option("--period", help='Only this period, e.g. "2026-Q4".')
    ] = None,
    org_unit: Annotated[str | None, typer.Option("--org-unit", help="Only this org unit.")] = None,
    as_of: AsOfOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the cascade of active objectives with their scores and pace.

    As the alignment service scores it: each objective's score and pace, its key results,
    and the objectives aligned to it nested below, so a person sees where the plan slips.
    With --as-of, as it was at that instant.
    """
    settings = settings_of(ctx, json_output)
    with one_line_errors():
        query = {"period": period, "org_unit": org_unit, "as_of": instant(as_of)}
        roots = ask(settings, "alignment", "GET", "/tree", query=query).body
    show_tree(roots, settings.json_output)


def replay(
    ctx: typer.Context,
    as_of: Annotated[str, typer.Option("--as-of", help="The instant, ISO-8601 with timezone.")],
    objective: Annotated[
        str | None, typer.Option("--objective", help="Only this objective and what aligns to it.")
    ] = None,
    from_kafka: Annotated[
        str | None,
        typer.Option(
            "--from-kafka",
            metavar="BOOTSTRAP",
            help="Rebuild from the topics on this Kafka, without any service.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Replay the OKRs as they were at an instant: definitions, targets, weights, values and
    scores then. From the alignment service (its log replayed up to then), or with
    --from-kafka straight from goal.events and metrics.events with the same rules."""
    settings = settings_of(ctx, json_output)
    with one_line_errors():
        moment = instant(as_of)
        assert moment is not None
        if from_kafka:
            roots = offline_tree(from_kafka, datetime.fromisoformat(moment))
        else:
            roots = ask(settings, "alignment", "GET", "/tree", query={"as_of": moment}).body
        if objective is not None:
            roots = [found] if (found := find_objective(roots, objective)) else []
            if not roots:
                raise CliError(f"no objective {objective} at {moment}")
    show_tree(roots, settings.json_output)


def offline_tree(bootstrap: str, moment: datetime) -> list[dict[str, Any]]:
    """The tree as of ``moment`` from the topics alone (the alignment rules in this process,
    on a scratch store that is thrown away)."""
    import asyncio
    import tempfile
    from pathlib import Path

    from aiokafka.errors import KafkaError

    from services.alignment.api import build_tree
    from services.alignment.rebuild import rebuild_from_topics
    from services.shared.settings import Settings

    options = Settings(kafka_bootstrap_servers=bootstrap).kafka_client_options()
    with tempfile.TemporaryDirectory(prefix="okr-replay-") as scratch:
        try:
            application = asyncio.run(rebuild_from_topics(options, moment, Path(scratch)))
        except (OSError, KafkaError) as error:
            raise CliError(f"cannot read the topics on {bootstrap}: {error}") from error
        try:
            return [
                node.model_dump(mode="json")
                for node in build_tree(application.tracks(), None, None)
            ]
        finally:
            application.close()


def find_objective(nodes: list[dict[str, Any]], objective_id: str) -> dict[str, Any] | None:
    for node in nodes:
        if node.get("id") == objective_id:
            return node
        if found := find_objective(node.get("children", []), objective_id):
            return found
    return None


def instant(text: str | None) -> str | None:
    """An --as-of value checked: ISO-8601 with a timezone (an instant, not a wall time)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--as-of: not an ISO-8601 instant: {text!r}") from None
    if moment.tzinfo is None:
        raise CliError(f"--as-of: {text!r} has no timezone (add Z or +01:00)")
    return moment.isoformat()


def show_tree(roots: list[dict[str, Any]], json_output: bool) -> None:
    if json_output:
        emit_json(roots)
        return
    from rich.tree import Tree

    console = Console()
    if not roots:
        console.print("No active objectives match.")
        return
    cascade = Tree(Text("Objectives", style="bold"), guide_style="dim")
    for root in roots:
        _grow(cascade, root)
    console.print(cascade)


def _grow(branch: Tree, node: Mapping[str, Any]) -> None:
    label = Text.assemble(
        (str(node.get("title", "")), "bold"),
        "  ",
        (percent(node.get("score")), "cyan"),
        "  ",
        styled(node.get("pace"), PACE_STYLES),
        (f"  {node.get('owner') or 'no owner'}, {node.get('period', '')}", "dim"),
    )
    twig = branch.add(label)
    for key_result in node.get("key_results", []):
        twig.add(
            Text.assemble(
                str(key_result.get("title", "")),
                "  ",
                (percent(key_result.get("score")), "cyan"),
                "  ",
                styled(key_result.get("status"), PACE_STYLES),
                (
                    f"  value {number(key_result.get('value'))}"
                    f" of {number(key_result.get('target'))}",
                    "dim",
                ),
            )
        )
    for child in node.get("children", []):
        _grow(twig, child)


# -- okr gaps ---------------------------------------------------------------------------------


def gaps(
    ctx: typer.Context,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="Only this kind: kpi_unaddressed, kr_without_data, objective_without_owner, "
            "kr_count_out_of_range, too_many_objectives, orphan_objective, stale_kpi.",
        ),
    ] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's.")] = None,
    period: Annotated[str | None, typer.Option("--period", help="Only this period's.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List the open gaps in the OKR set, oldest first.

    Gaps are what the alignment service found wrong with the set as a whole: KPIs nobody
    addresses, key results without data, orphan objectives, and so on.
    """
    settings = settings_of(ctx, json_output)
    with one_line_errors():
        found = ask(
            settings,
            "alignment",
            "GET",
            "/gaps",
            query={"kind": kind, "owner": owner, "period": period},
        ).body
    if settings.json_output:
        emit_json(found)
        return
    table = Table(title=f"Open gaps ({len(found)})")
    for column in ("kind", "subject", "owner", "period", "since", "why"):
        table.add_column(column)
    for gap in found:
        table.add_row(
            Text(str(gap.get("kind", ""))),
            Text(str(gap.get("subject", ""))),
            Text(gap.get("owner") or "-"),
            Text(gap.get("period") or "-"),
            moment(gap.get("since")),
            Text(str(gap.get("message", ""))),
        )
    Console().print(table)


# -- okr history ------------------------------------------------------------------------------


class HistoryFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


def history(
    ctx: typer.Context,
    objective_id: Annotated[str, typer.Argument(help="The objective's id.", show_default=False)],
    output_format: Annotated[
        HistoryFormat | None,
        typer.Option(
            "--format",
            help="table (default), jsonl (one JSON entry a line) or csv (a header, then one "
            "row an entry), on stdout.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Show every change of an objective, oldest first.

    Who set, redefined, checked in or archived it, when, and what changed: the audit trail
    behind its current state.
    """
    settings = settings_of(ctx, json_output)
    with one_line_errors():
        if settings.json_output and output_format not in (None, HistoryFormat.table):
            raise CliError(f"--json and --format {output_format} are alternatives: give one")
        entries: list[dict[str, Any]] = ask(
            settings, "goal", "GET", f"/objectives/{segment(objective_id)}/history"
        ).body
    if settings.json_output:
        emit_json(entries)
        return
    summaries = summarise(entries)
    if output_format is HistoryFormat.jsonl:
        for entry, summary in zip(entries, summaries, strict=True):
            typer.echo(json.dumps(entry | {"summary": summary}, separators=(",", ":")))
    elif output_format is HistoryFormat.csv:
        sheet = io.StringIO()
        writer = csv.writer(sheet, lineterminator="\n")
        writer.writerow(HISTORY_COLUMNS)
        for entry, summary in zip(entries, summaries, strict=True):
            writer.writerow([*(entry.get(column) for column in HISTORY_COLUMNS[:-1]), summary])
        typer.echo(sheet.getvalue(), nl=False)
    else:
        table = Table(title=f"History of objective {objective_id}")
        for column in ("version", "event", "time", "actor", "what"):
            table.add_column(column)
        for entry, summary in zip(entries, summaries, strict=True):
            table.add_row(
                str(entry.get("version", "")),
                Text(str(entry.get("event_type", ""))),
                moment(entry.get("occurred_at")),
                Text(str(entry.get("actor", ""))),
                Text(summary),
            )
        Console().print(table)


def summarise(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """One short line per history entry. A redefinition lists the service's field-level
    changes, and key results are named by title as of then: ids mean nothing to a reader."""
    summaries = []
    definition: Mapping[str, Any] = {}
    for entry in entries:
        payload: Mapping[str, Any] = entry.get("payload") or {}
        event_type = entry.get("event_type")
        if event_type == "ObjectiveSet":
            summary = (
                _redefinition(entry.get("changes") or [], definition, payload)
                if definition
                else _creation(payload)
            )
            definition = payload
        elif event_type == "ObjectiveArchived":
            summary = f"archived: {payload['reason']}" if payload.get("reason") else "archived"
        elif event_type == "KeyResultCheckedIn":
            titles = _titles(definition)
            key_result = str(payload.get("key_result_id", ""))
            summary = f"check-in on {titles.get(key_result, key_result)!r}: "
            summary += check_in_text(payload)
        else:
            summary = json.dumps(payload, separators=(",", ":"))
        summaries.append(_shorten(summary))
    return summaries


def _creation(definition: Mapping[str, Any]) -> str:
    period = (definition.get("period") or {}).get("label", "?")
    return (
        f"created {definition.get('title', '')!r}: owner {definition.get('owner') or '-'}, "
        f"{definition.get('level', '?')} level in {definition.get('org_unit', '?')}, "
        f"period {period}, {len(definition.get('key_results', []))} key results"
    )


def _redefinition(
    changes: Iterable[Mapping[str, Any]], before: Mapping[str, Any], after: Mapping[str, Any]
) -> str:
    """``title 'a' → 'b'; 'Onboard customers': target 300 → 400; added 'NPS'``."""
    titles = _titles(before) | _titles(after)
    parts: list[str] = []
    by_key_result: dict[str, list[Mapping[str, Any]]] = {}
    for change in changes:
        field = str(change.get("field", ""))
        if match := KEY_RESULT_FIELD.fullmatch(field):
            by_key_result.setdefault(match["id"], []).append({**change, "field": match["field"]})
        elif field in ("status", "id") or field.startswith(("check_ins", "period.")):
            # period.label carries the period; status and check-ins change by other events.
            if field == "period.label":
                parts.append(_change({**change, "field": "period"}))
        else:
            parts.append(_change(change))
    for key_result, kr_changes in by_key_result.items():
        title = titles.get(key_result, key_result)
        fields = {str(change["field"]): change for change in kr_changes}
        if "title" in fields and fields["title"].get("before") is None:
            parts.append(f"added {title!r}")
        elif "title" in fields and fields["title"].get("after") is None:
            parts.append(f"dropped {title!r}")
        else:
            parts.append(f"{title!r}: " + ", ".join(_change(c) for c in kr_changes))
    return "redefined: " + ("; ".join(parts) if parts else "no change")


def _titles(definition: Mapping[str, Any]) -> dict[str, str]:
    return {str(kr.get("id")): str(kr.get("title")) for kr in definition.get("key_results", [])}


def _change(change: Mapping[str, Any]) -> str:
    return f"{change.get('field')} {_brief(change.get('before'))} → {_brief(change.get('after'))}"


def _brief(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_brief(item) for item in value) + "]"
    return "none" if value is None else number(value)


def _shorten(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_LIMIT else line[: SUMMARY_LIMIT - 3] + "..."


# -- okr demo ---------------------------------------------------------------------------------


def demo(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Load the demo KPIs, readings and objectives into empty services.

    The seed articles' examples, to try the platform. A service that already holds data gets
    nothing added, so running it twice is harmless.
    """
    from services import demo as demo_data

    settings = settings_of(ctx, json_output, writes=True)
    with one_line_errors():
        readings = _loading(
            "metrics",
            settings.metrics_url,
            lambda: demo_data.load_kpis(settings.metrics_url, token=settings.token),
        )
        objectives = _loading(
            "goal",
            settings.goal_url,
            lambda: demo_data.load_objectives(settings.goal_url, token=settings.token),
        )
    loaded = {
        "kpis_defined": len(demo_data.KPIS) if readings else 0,
        "readings_recorded": readings,
        "objectives_created": objectives,
    }
    if settings.json_output:
        emit_json(loaded)
        return
    console = Console()
    if readings:
        console.print(f"Defined {loaded['kpis_defined']} KPIs and recorded {readings} readings.")
    else:
        console.print("The metrics service already holds KPIs: no KPIs or readings added.")
    if objectives:
        console.print(f"Created {objectives} objectives with their key results and check-ins.")
    else:
        console.print("The goal service already holds objectives: no objectives added.")


def _loading(service: Service, base_url: str, load: Callable[[], int]) -> int:
    """Run one of ``services.demo``'s loaders, its httpx failures said in one line."""
    import httpx

    try:
        return load()
    except httpx.HTTPStatusError as error:
        answer = error.response
        raise CliError(
            f"the {service} service at {base_url} answered {answer.status_code} "
            f"{answer.reason_phrase}: {describe_answer(answer)}"
        ) from None
    except httpx.TransportError as error:
        raise CliError(
            f"cannot reach the {service} service at {base_url}: "
            f"{str(error) or type(error).__name__}"
        ) from None
