"""``okr``: the command-line tool people use to drive the OKR platform.

One typer app: a sub-app per subject (``objective``, ``kpi``, ``readings``) and a command per
view (``tree``, ``gaps``, ``history``, ``replay``, ``verify``, ``demo``). The root callback
gathers what every command shares (the services' URLs, the token, ``--json``) into one
``CliSettings``, so each command starts from the same configuration and fails in the same
one-line way.
"""

from __future__ import annotations

import os

import typer

from services.cli import audit, kpis, objectives, readings, views
from services.cli.context import (
    DEFAULT_ALIGNMENT_URL,
    DEFAULT_GOAL_URL,
    DEFAULT_METRICS_URL,
    TOKEN_VARIABLE,
    AlignmentUrlOption,
    CliSettings,
    GoalUrlOption,
    JsonOption,
    MetricsUrlOption,
    one_line_errors,
)

__all__ = ["app"]

app = typer.Typer(
    name="okr",
    help="Drive the OKR platform: objectives, KPIs and their readings.",
    no_args_is_help=True,
    # A traceback must never print local variables: they may hold the bearer token.
    pretty_exceptions_show_locals=False,
)
app.add_typer(readings.app, name="readings")
app.command("verify")(audit.verify)
app.add_typer(objectives.app, name="objective")
app.add_typer(kpis.app, name="kpi")
app.command("tree")(views.tree)
app.command("replay")(views.replay)
app.command("gaps")(views.gaps)
app.command("history")(views.history)
app.command("demo")(views.demo)


@app.callback()
def okr(
    ctx: typer.Context,
    metrics_url: MetricsUrlOption = DEFAULT_METRICS_URL,
    goal_url: GoalUrlOption = DEFAULT_GOAL_URL,
    alignment_url: AlignmentUrlOption = DEFAULT_ALIGNMENT_URL,
    json_output: JsonOption = False,
) -> None:
    """Drive the OKR platform: objectives, KPIs and their readings.

    The bearer token for the services is read from the environment variable OKR_TOKEN.
    """
    with one_line_errors():
        ctx.obj = CliSettings.configure(
            goal_url=goal_url,
            metrics_url=metrics_url,
            alignment_url=alignment_url,
            json_output=json_output,
            token=os.environ.get(TOKEN_VARIABLE),
        )
