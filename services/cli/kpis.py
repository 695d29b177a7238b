"""``okr kpi``: define KPIs, see their health, and record a reading by hand (the metrics
service).

A KPI is a measure the organisation watches continuously; key results link to it. Readings
normally arrive from outside systems (``okr readings import``, the ``kpi.readings`` topic);
``okr kpi record`` is for the odd manual observation, and is safe to repeat because the
service recognises a reading it has already recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from services.cli.context import CliError, JsonOption, one_line_errors, settings_of
from services.cli.views import (
    HEALTH_STYLES,
    ask,
    details_table,
    emit_json,
    finite,
    moment,
    number,
    segment,
    styled,
)

#: Colours of what the service did with a recorded reading.
OUTCOME_STYLES = {"recorded": "green", "duplicate": "yellow", "rejected": "red"}

app = typer.Typer(
    name="kpi",
    help="KPIs: their definitions, current values and health, in the metrics service.",
    no_args_is_help=True,
)

KpiKey = Annotated[
    str,
    typer.Argument(help="The KPI's key: lower case letters, digits, _.", show_default=False),
]


def _flag(value: bool) -> Text:
    return Text("yes", style="red") if value else Text("no", style="dim")


def _in_unit(value: Any, definition: dict[str, Any]) -> str:
    """A number of the KPI's with its unit, ``6.2 %``; a missing number is a bare ``-``."""
    unit = definition.get("unit")
    return f"{number(value)} {unit}" if unit and value is not None else number(value)


def show_kpi(status: dict[str, Any], console: Console, heading: str | None = None) -> None:
    """A KPI's definition and current state: value, health, stale and stagnant."""
    definition = status.get("definition") or {}
    key = definition.get("key", "")
    rows: list[tuple[str, str | Text]] = [
        ("name", str(definition.get("name", ""))),
        ("value", _in_unit(status.get("value"), definition)),
        ("observed at", moment(status.get("observed_at"))),
        ("health", styled(status.get("health"), HEALTH_STYLES)),
        ("stale", _flag(bool(status.get("stale")))),
        ("stagnant", _flag(bool(status.get("stagnant")))),
        ("unhealthy since", moment(status.get("unhealthy_since"))),
        ("direction", str(definition.get("direction", ""))),
        ("target", _in_unit(definition.get("target"), definition)),
        ("warning", _in_unit(definition.get("warning"), definition)),
        ("interval", str(definition.get("interval", ""))),
        ("indicator", str(definition.get("indicator", ""))),
        ("owner", definition.get("owner") or "-"),
        ("readings", number(status.get("readings"))),
        ("version", str(status.get("version", ""))),
    ]
    if definition.get("description"):
        rows.append(("description", str(definition["description"])))
    title = f"{heading} KPI {key}" if heading else f"KPI {key}"
    console.print(details_table(rows, title=title))


@app.command("define")
def define(
    ctx: typer.Context,
    key: KpiKey,
    name: Annotated[str | None, typer.Option("--name", help="What people call it.")] = None,
    direction: Annotated[
        str | None,
        typer.Option("--direction", help="higher_is_better or lower_is_better."),
    ] = None,
    target: Annotated[
        float | None, typer.Option("--target", help="The value that is healthy.")
    ] = None,
    warning: Annotated[
        float | None,
        typer.Option("--warning", help="Between target and warning: warning; beyond: unhealthy."),
    ] = None,
    unit: Annotated[str | None, typer.Option("--unit", help="e.g. %, USD, customers.")] = None,
    interval: Annotated[
        str | None,
        typer.Option("--interval", help="How often a reading is expected: P1D (default), P1W."),
    ] = None,
    indicator: Annotated[
        str | None, typer.Option("--indicator", help="leading or lagging (default).")
    ] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Who watches it.")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    json_output: JsonOption = False,
) -> None:
    """Define a KPI, or redefine it.

    The definition given replaces the whole previous one, so options left out fall back to
    the service's defaults.
    """
    settings = settings_of(ctx, json_output, writes=True)
    fields: dict[str, str | float | None] = {
        "name": name,
        "direction": direction,
        "unit": unit,
        "interval": interval,
        "indicator": indicator,
        "owner": owner,
        "description": description,
    }
    with one_line_errors():
        fields |= {"target": finite("--target", target), "warning": finite("--warning", warning)}
        body = {field: value for field, value in fields.items() if value is not None}
        answer = ask(settings, "metrics", "PUT", f"/kpis/{segment(key)}", body=body)
    if settings.json_output:
        emit_json(answer.body)
    else:
        show_kpi(answer.body, Console(), "Defined" if answer.status == 201 else "Redefined")


@app.command("list")
def list_kpis(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List every KPI with its current value and health, by key."""
    settings = settings_of(ctx, json_output)
    with one_line_errors():
        found = ask(settings, "metrics", "GET", "/kpis").body
    if settings.json_output:
        emit_json(found)
        return
    table = Table(title=f"KPIs ({len(found)})")
    for column in ("key", "name", "value", "target", "health", "stale", "stagnant", "observed"):
        table.add_column(column)
    for status in found:
        definition = status.get("definition") or {}
        table.add_row(
            Text(str(definition.get("key", ""))),
            Text(str(definition.get("name", ""))),
            Text(_in_unit(status.get("value"), definition)),
            Text(_in_unit(definition.get("target"), definition)),
            styled(status.get("health"), HEALTH_STYLES),
            _flag(bool(status.get("stale"))),
            _flag(bool(status.get("stagnant"))),
            moment(status.get("observed_at")),
        )
    Console().print(table)


@app.command("show")
def show(ctx: typer.Context, key: KpiKey, json_output: JsonOption = False) -> None:
    """Show a KPI's definition, latest value and health.

    Also whether it is stale (no recent reading) or stagnant (unhealthy and not moving).
    """
    settings = settings_of(ctx, json_output)
    with one_line_errors():
        status = ask(settings, "metrics", "GET", f"/kpis/{segment(key)}").body
    if settings.json_output:
        emit_json(status)
    else:
        show_kpi(status, Console())


#: ``okr kpi record churn_rate -0.5``: a negative VALUE is a value, not an unknown option.
@app.command("record", context_settings={"ignore_unknown_options": True})
def record(
    ctx: typer.Context,
    key: KpiKey,
    value: Annotated[float, typer.Argument(help="The observed value.", show_default=False)],
    observed_at: Annotated[
        str | None,
        typer.Option(
            "--observed-at",
            help="When it was observed, ISO-8601 with a timezone (default: now, UTC).",
        ),
    ] = None,
    source: Annotated[str, typer.Option("--source", help="Where the value comes from.")] = "cli",
    reading_id: Annotated[
        str | None,
        typer.Option(
            "--reading-id",
            help="The reading's id at its source; default derived from key, source, time and "
            "value, so recording the same reading again is a duplicate.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Record one reading of a KPI.

    Says whether it was recorded, a duplicate (already recorded) or rejected: then it exits
    1 with the service's reason.
    """
    settings = settings_of(ctx, json_output, writes=True)
    reading: dict[str, Any] = {
        "kpi": key,
        "value": value,
        "observed_at": observed_at or datetime.now(UTC).isoformat(),
        "source": source,
    }
    if reading_id is not None:
        reading["reading_id"] = reading_id
    with one_line_errors():
        finite("VALUE", value)
        # A list of one, so that a rejected reading is an outcome with its reason, like any
        # other, rather than a 422 for the whole request.
        report = ask(
            settings, "metrics", "POST", f"/kpis/{segment(key)}/readings", body=[reading]
        ).body
        outcomes = report.get("outcomes") if isinstance(report, dict) else None
        if not isinstance(outcomes, list) or len(outcomes) != 1:
            raise CliError("the metrics service answered one reading without its one outcome")
    outcome: dict[str, Any] = outcomes[0]
    if settings.json_output:
        emit_json(report)
    else:
        table = Table(title=f"Reading of KPI {key}")
        for column in ("reading id", "value", "observed at", "outcome", "why"):
            table.add_column(column)
        table.add_row(
            Text(str(outcome.get("reading_id") or "-")),
            number(value),
            moment(reading["observed_at"]),
            styled(outcome.get("status"), OUTCOME_STYLES),
            Text(outcome.get("reason") or ""),
        )
        Console().print(table)
    if outcome.get("status") == "rejected":
        with one_line_errors():
            raise CliError(f"the metrics service rejected the reading: {outcome.get('reason')}")
