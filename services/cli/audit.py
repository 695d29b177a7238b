"""``okr verify``: ask every service to verify its tamper-evident log."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.client import ServiceClient
from services.cli.context import JsonOption, one_line_errors, settings_of

#: A log failed verification (apart from 1: the command could not run).
EXIT_BROKEN = 2


def verify(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Verify each service's hash-chained event log against the head it published; print the
    first broken position of any log that does not hold. Exits 2 when one is broken."""
    settings = settings_of(ctx, json_output)
    reports: list[dict[str, Any]] = []
    with one_line_errors():
        for service, url in (
            ("goal", settings.goal_url),
            ("metrics", settings.metrics_url),
            ("alignment", settings.alignment_url),
        ):
            with ServiceClient(service, url, settings.token) as client:
                reports.append(client.send("GET", "/audit/verify").json())
    if settings.json_output:
        typer.echo(json.dumps(reports, indent=2))
    else:
        table = Table(title="Audit chains")
        for column in (
            "service",
            "verdict",
            "events",
            "head",
            "published head",
            "broken at",
            "why",
        ):
            table.add_column(column)
        for report in reports:
            published = report.get("published_head") or {}
            table.add_row(
                report["service"],
                "[green]ok[/green]" if report["ok"] else "[red]BROKEN[/red]",
                str(report["checked"]),
                str(report["head_position"]),
                str(published.get("position", "-")),
                str(report.get("broken_at") or "-"),
                report.get("reason") or "",
            )
        Console().print(table)
    if not all(report["ok"] for report in reports):
        raise typer.Exit(EXIT_BROKEN)
