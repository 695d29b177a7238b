"""``okr objective``: set, list, show, archive and check in on objectives (the goal service).

An objective is created from the body of ``POST /objectives`` in a file (or stdin), or, for
the common case, from flags with one ``--kr`` per key result. The CLI only reshapes input into
that body; whether it is a valid objective is the goal service's call, and its 422 answer,
naming the field, is shown as it is.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from services.cli.context import CliError, JsonOption, one_line_errors, settings_of
from services.cli.views import (
    PACE_STYLES,
    ask,
    check_in_text,
    details_table,
    emit_json,
    finite,
    number,
    percent,
    segment,
    styled,
)

KR_FORMAT = "title|kind|baseline|target[|kpi[|aggregation]]"
KR_FIELDS = ("title", "kind", "baseline", "target", "kpi", "aggregation")
#: How ``okr objective list`` and the goal service label a custom period; the service takes
#: such a period as ``{"start", "end"}``, not as this label.
RANGE_SEPARATOR = ".."

app = typer.Typer(
    name="objective",
    help="Objectives and their key results, in the goal service.",
    no_args_is_help=True,
)

ObjectiveId = Annotated[str, typer.Argument(help="The objective's id.", show_default=False)]
LEVELS = "company, department, team or individual"


# -- input ------------------------------------------------------------------------------------


def read_objective(file: Path) -> dict[str, Any]:
    """The JSON object in the file (``-``: stdin), checked to be JSON only: the rest is the
    service's to judge."""
    name = "stdin" if str(file) == "-" else str(file)
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {name}: {error}") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise CliError(
            f"{name} is not JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    if not isinstance(body, dict):
        raise CliError(f"{name} holds a JSON {type(body).__name__}, not an objective object")
    return body


def _no_constant(name: str) -> Any:
    raise CliError(f"{name} is not a JSON number: a value must be finite")


def parse_key_result(text: str) -> dict[str, Any]:
    """A key result from ``--kr``: empty cells are left out, numbers must be numbers."""
    cells = [cell.strip() for cell in text.split("|")]
    if not 2 <= len(cells) <= len(KR_FIELDS):
        raise CliError(f"--kr {text!r}: expected {KR_FORMAT}")
    key_result: dict[str, Any] = {}
    for name, cell in zip(KR_FIELDS, cells, strict=False):
        if not cell:
            continue
        if name in ("baseline", "target"):
            try:
                key_result[name] = float(cell)
            except ValueError:
                raise CliError(f"--kr {text!r}: {name} {cell!r} is not a number") from None
            if not math.isfinite(key_result[name]):
                raise CliError(f"--kr {text!r}: {name} must be a finite number")
        else:
            key_result[name] = cell
    return key_result


def period_of(label: str) -> str | dict[str, str]:
    """``2026``, ``2026-Q4`` and ``2026-11`` as they are; ``START..END`` (the label the
    service gives a custom period) as the ``{"start", "end"}`` it takes."""
    start, separator, end = label.partition(RANGE_SEPARATOR)
    return {"start": start.strip(), "end": end.strip()} if separator else label


def objective_from_flags(
    *,
    title: str | None,
    description: str | None,
    owner: str | None,
    org_unit: str | None,
    level: str | None,
    period: str | None,
    objective_type: str | None,
    parent_id: str | None,
    key_results: list[str],
) -> dict[str, Any]:
    """The body of ``POST /objectives`` from the flags; a flag not given is not sent, so a
    missing required field is named by the service's answer."""
    fields: dict[str, Any] = {
        "title": title,
        "description": description,
        "owner": owner,
        "org_unit": org_unit,
        "level": level,
        "period": period_of(period) if period is not None else None,
        "type": objective_type,
        "parent_id": parent_id,
    }
    body = {name: value for name, value in fields.items() if value is not None}
    body["key_results"] = [parse_key_result(text) for text in key_results]
    return body


# -- output -----------------------------------------------------------------------------------


def show_objective(view: dict[str, Any], console: Console, heading: str | None = None) -> None:
    """An objective as the goal service shows it: definition, latest score, and each key
    result with its latest check-in and score."""
    objective = view.get("objective", {})
    score = view.get("score") or {}
    title = f"{heading}: {objective.get('title', '')}" if heading else objective.get("title")
    rows: list[tuple[str, str | Text]] = [
        ("id", str(objective.get("id", ""))),
        ("owner", objective.get("owner") or "-"),
        ("org unit", str(objective.get("org_unit", ""))),
        ("level", str(objective.get("level", ""))),
        ("period", str((objective.get("period") or {}).get("label", ""))),
        ("type", str(objective.get("type", ""))),
        ("status", str(objective.get("status", ""))),
        ("parent", objective.get("parent_id") or "-"),
        ("score", percent(score.get("score"))),
        ("pace", styled(score.get("status"), PACE_STYLES)),
        ("version", f"{view.get('version', '?')}, last by {view.get('last_actor', '?')}"),
    ]
    if objective.get("description"):
        rows.insert(1, ("description", str(objective["description"])))
    console.print(details_table(rows, title=title))
    key_results = Table(title="Key results", title_justify="left")
    # Check-ins need the whole id: it is never wrapped or cut; the other columns fold instead.
    key_results.add_column("id", no_wrap=True)
    for column in ("key result", "measure", "latest check-in", "score"):
        key_results.add_column(column, overflow="fold")
    for key_result in view.get("key_results", []):
        kr_score = key_result.get("score") or {}
        key_results.add_row(
            Text(str(key_result.get("id", ""))),
            Text(str(key_result.get("title", ""))),
            Text(measure(key_result)),
            Text(check_in_text(key_result.get("check_in"))),
            Text.assemble(
                percent(kr_score.get("score")), "\n", styled(kr_score.get("status"), PACE_STYLES)
            ),
        )
    console.print(key_results)
    for warning in view.get("warnings", []):
        console.print(Text(f"warning: {warning}", style="yellow"))


def measure(key_result: dict[str, Any]) -> str:
    """How a key result is measured: ``metric 8 → 5 %``, ``kpi churn_rate (latest) 8 → 5``,
    ``milestone (3 items)``."""
    kind = str(key_result.get("kind", ""))
    if key_result.get("kpi"):
        kind += f" {key_result['kpi']} ({key_result.get('aggregation') or 'latest'})"
    if key_result.get("checklist"):
        kind += f" ({len(key_result['checklist'])} items)"
    if key_result.get("baseline") is None and key_result.get("target") is None:
        return kind
    unit = f" {key_result['unit']}" if key_result.get("unit") else ""
    baseline, target = number(key_result.get("baseline")), number(key_result.get("target"))
    return f"{kind} {baseline} → {target}{unit}"


def _answer(view: dict[str, Any], json_output: bool, heading: str) -> None:
    if json_output:
        emit_json(view)
    else:
        show_objective(view, Console(), heading)


# -- commands ---------------------------------------------------------------------------------


@app.command("create")
def create(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="JSON file with the body of POST /objectives (- reads stdin). "
            "Instead of the flags below.",
        ),
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="What to achieve.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="The one accountable owner.")] = None,
    org_unit: Annotated[
        str | None, typer.Option("--org-unit", help="Org unit, e.g. marketing/growth.")
    ] = None,
    level: Annotated[str | None, typer.Option("--level", help=LEVELS + ".")] = None,
    period: Annotated[
        str | None,
        typer.Option("--period", help="2026, 2026-Q4, 2026-11 or 2026-07-01..2026-12-31."),
    ] = None,
    objective_type: Annotated[
        str | None, typer.Option("--type", help="committed (default) or aspirational.")
    ] = None,
    parent_id: Annotated[
        str | None, typer.Option("--parent-id", help="Id of the objective this aligns to.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="Why.")] = None,
    key_results: Annotated[
        list[str] | None,
        typer.Option(
            "--kr",
            help=f"A key result, repeatable: {KR_FORMAT}; kind is metric, kpi, milestone or "
            "rollup; leave a cell empty to omit it (a milestone has no baseline or target).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create an objective with its key results, from a JSON file or from flags.

    Prints the new objective with the ids of its key results (check-ins need them).
    """
    settings = settings_of(ctx, json_output, writes=True)
    flags = {
        "title": title,
        "description": description,
        "owner": owner,
        "org_unit": org_unit,
        "level": level,
        "period": period,
        "objective_type": objective_type,
        "parent_id": parent_id,
    }
    with one_line_errors():
        if file is not None:
            given = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value]
            if given or key_results:
                raise CliError(
                    f"give the objective with --file or with flags, not both "
                    f"(--file and {', '.join(given or ['--kr'])})"
                )
            body = read_objective(file)
        elif not any(value is not None for value in flags.values()) and not key_results:
            raise CliError(
                "give the objective with --file FILE (- for stdin), or with --title, --owner, "
                "--org-unit, --level, --period and one --kr per key result"
            )
        else:
            body = objective_from_flags(**flags, key_results=key_results or [])
        view = ask(settings, "goal", "POST", "/objectives", body=body).body
    _answer(view, settings.json_output, "Created")


@app.command("list")
def list_objectives(
    ctx: typer.Context,
    period: Annotated[str | None, typer.Option("--period", help='e.g. "2026-Q4".')] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    org_unit: Annotated[str | None, typer.Option("--org-unit")] = None,
    level: Annotated[str | None, typer.Option("--level", help=LEVELS + ".")] = None,
    status: Annotated[str | None, typer.Option("--status", help="active or archived.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List objectives, filtered by period, owner, org unit, level or status."""
    settings = settings_of(ctx, json_output)
    query = {
        "period": period,
        "owner": owner,
        "org_unit": org_unit,
        "level": level,
        "status": status,
    }
    with one_line_errors():
        found = ask(settings, "goal", "GET", "/objectives", query=query).body
    if settings.json_output:
        emit_json(found)
        return
    table = Table(title=f"Objectives ({len(found)})")
    table.add_column("id", no_wrap=True)
    for column in ("title", "owner", "org unit", "level", "period", "status", "KRs"):
        table.add_column(column, overflow="fold")
    for objective in found:
        table.add_row(
            Text(str(objective.get("id", ""))),
            Text(str(objective.get("title", ""))),
            Text(objective.get("owner") or "-"),
            Text(str(objective.get("org_unit", ""))),
            str(objective.get("level", "")),
            Text(str((objective.get("period") or {}).get("label", ""))),
            str(objective.get("status", "")),
            str(len(objective.get("key_results", []))),
        )
    Console().print(table)


@app.command("show")
def show(ctx: typer.Context, objective_id: ObjectiveId, json_output: JsonOption = False) -> None:
    """Show an objective with its key results, check-ins and latest scores.

    The scores and pace are the latest the goal service has heard from the alignment service.
    """
    settings = settings_of(ctx, json_output)
    with one_line_errors():
        view = ask(settings, "goal", "GET", f"/objectives/{segment(objective_id)}").body
    if settings.json_output:
        emit_json(view)
    else:
        show_objective(view, Console())


@app.command("archive")
def archive(
    ctx: typer.Context,
    objective_id: ObjectiveId,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, kept in the objective's history.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Archive an objective.

    It leaves the tree and is no longer scored; its history stays.
    """
    settings = settings_of(ctx, json_output, writes=True)
    path = f"/objectives/{segment(objective_id)}/archive"
    with one_line_errors():
        body = {"reason": reason} if reason is not None else None
        view = ask(settings, "goal", "POST", path, body=body).body
    _answer(view, settings.json_output, "Archived")


@app.command("check-in")
def check_in(
    ctx: typer.Context,
    objective_id: ObjectiveId,
    key_result_id: Annotated[
        str, typer.Argument(help="The key result's id (okr objective show lists them).")
    ],
    value: Annotated[
        float | None, typer.Option("--value", help="The current value (metric key results).")
    ] = None,
    done: Annotated[
        bool | None, typer.Option("--done/--not-done", help="A milestone done, or not.")
    ] = None,
    checklist_done: Annotated[
        list[str] | None,
        typer.Option("--checklist-done", help="A checklist item done (repeatable; milestones)."),
    ] = None,
    confidence: Annotated[
        int | None, typer.Option("--confidence", help="How likely the target is, 0 to 10.")
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment")] = None,
    json_output: JsonOption = False,
) -> None:
    """Record progress on a key result.

    A value (metric), done or checklist items (milestone), with a confidence and a comment.
    Key results linked to a KPI take their value from its readings instead.
    """
    settings = settings_of(ctx, json_output, writes=True)
    path = f"/objectives/{segment(objective_id)}/key-results/{segment(key_result_id)}/check-ins"
    with one_line_errors():
        fields = {
            "value": finite("--value", value),
            "done": done,
            "checklist_done": checklist_done or None,
            "confidence": confidence,
            "comment": comment,
        }
        body = {name: given for name, given in fields.items() if given is not None}
        view = ask(settings, "goal", "POST", path, body=body).body
    _answer(view, settings.json_output, "Checked in")
