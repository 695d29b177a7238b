"""The metrics service's answer to a batch of readings (``contracts.IngestReport``), as
``okr readings import`` reads it.

A module of its own, imported once a batch was sent, so that ``okr --help`` does without
pydantic (below the top level, typer needs it to convert the options).
"""

from __future__ import annotations

from pydantic import ValidationError

from contracts import IngestReport, OutcomeView
from services.cli.context import CliError


def outcomes_of(body: bytes, sent: int) -> list[OutcomeView]:
    """The outcomes of an answer, checked to be one per reading sent: a line number reported
    against the wrong row would be worse than no report."""
    try:
        report = IngestReport.model_validate_json(body)
    except ValidationError as error:
        raise CliError(
            f"the metrics service answered a batch with an unexpected body: "
            f"{error.errors()[0]['msg']}"
        ) from None
    if sorted(outcome.index for outcome in report.outcomes) != list(range(sent)):
        raise CliError(
            f"the metrics service answered a batch of {sent} readings with "
            f"{len(report.outcomes)} outcomes that do not match them one to one"
        )
    return report.outcomes
