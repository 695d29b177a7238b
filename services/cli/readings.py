"""``okr readings``: load KPI readings from outside systems into the metrics service.

``okr readings import FILE.csv`` streams the file: it reads one batch of rows, posts it to
``POST /readings``, and only then reads the next, so a file of millions of rows needs memory
for one batch. Importing a file again, whole or after an import stopped halfway, is safe:
the service recognises each reading by its reading id (given in the file, or derived from
kpi, source, observed_at and value) and answers ``duplicate`` instead of recording it twice.

The CLI checks the shape of the file (its header, the number of cells per row); the service
checks the readings themselves and says why it rejects one, so the rules live in one place.

The progress bar and the reading of the service's answers are imported when an import runs,
not at every ``okr`` start.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from services.cli.client import RetryPolicy, ServiceClient
from services.cli.context import (
    CliError,
    CliSettings,
    JsonOption,
    one_line_errors,
    settings_of,
)

if TYPE_CHECKING:
    from contracts import OutcomeView

REQUIRED_COLUMNS = ("kpi", "value", "observed_at", "source")
OPTIONAL_COLUMNS = ("reading_id", "unit")
ALLOWED_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
#: The metrics service refuses larger requests.
MAX_BATCH_SIZE = 10_000
DEFAULT_BATCH_SIZE = 1_000
#: Rejected rows listed in the table; ``--json`` lists all.
REJECTS_SHOWN = 20
#: Posting a batch again is safe (readings are idempotent by reading id), so ride out a restart.
BATCH_RETRY = RetryPolicy(attempts=5, first_delay=0.5, max_delay=8.0)
#: Exit code of ``--fail-on-reject`` when the import ran but the service rejected rows.
EXIT_REJECTED = 2

#: A plain decimal number as spreadsheets and databases export it; anything else is sent as
#: text and the service says why it is not a number.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

app = typer.Typer(
    name="readings",
    help="KPI readings: observations of KPIs from outside systems.",
    no_args_is_help=True,
)


@dataclass(frozen=True)
class Reject:
    """A row that was not recorded, by its line in the CSV so a person can find and fix it."""

    line: int
    kpi: str | None
    reading_id: str | None
    reason: str


@dataclass
class Batch:
    """The readings of one request, each with the CSV line it started on, because the service
    answers by position in the request and people think in lines of the file."""

    readings: list[dict[str, object]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    #: Rows the CLI refused before sending (a wrong number of cells).
    rejects: list[Reject] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.readings) + len(self.rejects)


@dataclass
class ImportSummary:
    """The running totals of an import; keeps every reject only when asked (``--json``), so a
    file of millions of bad rows does not fill memory for a table that shows twenty."""

    file: str
    keep_all_rejects: bool
    rows: int = 0
    recorded: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    rejects: list[Reject] = field(default_factory=list)

    def add_reject(self, reject: Reject) -> None:
        self.rejected += 1
        if self.keep_all_rejects or len(self.rejects) < REJECTS_SHOWN:
            self.rejects.append(reject)

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "rows": self.rows,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "batches": self.batches,
            "rejects": [
                {
                    "line": reject.line,
                    "kpi": reject.kpi,
                    "reading_id": reject.reading_id,
                    "reason": reject.reason,
                }
                for reject in self.rejects
            ],
        }


class ReadingsCsv:
    """A CSV file of readings, read a batch at a time.

    The header is checked when the file is opened, before anything is sent, so a wrong file
    fails at once instead of after half of it was imported. ``bytes_read`` follows the file
    position, which lets a progress bar run without counting the rows first.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._binary = path.open("rb")
            self.size = path.stat().st_size
        except FileNotFoundError:
            raise CliError(f"{path}: no such file") from None
        except OSError as error:
            raise CliError(f"cannot read {path}: {error.strerror or error}") from None
        # utf-8-sig: spreadsheets often start UTF-8 CSV files with a byte order mark.
        self._text = io.TextIOWrapper(self._binary, encoding="utf-8-sig", newline="")
        self._reader = csv.reader(self._text)
        self._last_line = 0
        try:
            self.columns = self._read_header()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ReadingsCsv:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._text.close()

    @property
    def bytes_read(self) -> int:
        return self._binary.tell()

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Batches of at most ``batch_size`` rows; blank rows are skipped and not counted."""
        batch = Batch()
        for line, cells in self._rows():
            if len(cells) != len(self.columns):
                batch.rejects.append(self._wrong_width(line, cells))
            else:
                batch.readings.append(self._reading(cells))
                batch.lines.append(line)
            if batch.rows >= batch_size:
                yield batch
                batch = Batch()
        if batch.rows:
            yield batch

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        """Non-blank rows with the line each starts on (a quoted cell may span lines)."""
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise CliError(f"{self.path}, line {self._reader.line_num}: {error}") from None
            except UnicodeDecodeError as error:
                raise CliError(
                    f"{self.path} is not UTF-8 text (after line {self._last_line}): {error.reason}"
                ) from None
            line = self._last_line + 1
            self._last_line = self._reader.line_num
            if any(cell.strip() for cell in cells):
                yield line, cells

    def _read_header(self) -> list[str]:
        first = next(self._rows(), None)
        if first is None:
            raise CliError(f"{self.path} is empty: {self._expected()}")
        columns = [cell.strip() for cell in first[1]]
        missing = [column for column in REQUIRED_COLUMNS if column not in columns]
        unknown = [column for column in columns if column not in ALLOWED_COLUMNS]
        repeated = sorted({column for column in ALLOWED_COLUMNS if columns.count(column) > 1})
        problems = []
        if missing:
            problems.append(f"missing required {_columns(missing)}")
        if unknown:
            problems.append(f"unknown {_columns(unknown, quote=True)}")
        if repeated:
            problems.append(f"repeated {_columns(repeated)}")
        if problems:
            raise CliError(f"{self.path}: bad header: {'; '.join(problems)} ({self._expected()})")
        return columns

    @staticmethod
    def _expected() -> str:
        return (
            f"expected a header row with the columns {','.join(REQUIRED_COLUMNS)} "
            f"and optionally {','.join(OPTIONAL_COLUMNS)}, in any order"
        )

    def _reading(self, cells: list[str]) -> dict[str, object]:
        """A reading as the service takes it. Cells are trimmed (a stray space would make a
        different KPI key); an empty optional cell is absent; an empty required cell is sent
        empty for the service to reject with its reason."""
        reading: dict[str, object] = {}
        for column, cell in zip(self.columns, cells, strict=True):
            text = cell.strip()
            if column == "value":
                reading[column] = _number_or_text(text)
            elif text or column in REQUIRED_COLUMNS:
                reading[column] = text
        return reading

    def _wrong_width(self, line: int, cells: list[str]) -> Reject:
        named = dict(zip(self.columns, (cell.strip() for cell in cells), strict=False))
        return Reject(
            line=line,
            kpi=named.get("kpi") or None,
            reading_id=named.get("reading_id") or None,
            reason=f"the row has {len(cells)} cells but the header {len(self.columns)} columns",
        )


def _columns(names: list[str], *, quote: bool = False) -> str:
    shown = ", ".join(repr(name) if quote else name for name in names)
    return f"column{'s' if len(names) > 1 else ''} {shown}"


def _number_or_text(text: str) -> float | str:
    """A number when the cell is a plain finite decimal number, else the text as it is."""
    if _NUMBER.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
    return text


def send_batch(client: ServiceClient, batch: Batch, summary: ImportSummary) -> None:
    """Post one batch and add the service's outcomes to the summary, rejects by CSV line."""
    from services.cli.batch_report import outcomes_of

    rejects = list(batch.rejects)
    outcomes: list[OutcomeView] = []
    if batch.readings:
        response = client.send("POST", "/readings", json_body=batch.readings, retry=BATCH_RETRY)
        outcomes = outcomes_of(response.content, len(batch.readings))
    for outcome in outcomes:
        if outcome.status == "recorded":
            summary.recorded += 1
        elif outcome.status == "duplicate":
            summary.duplicates += 1
        else:
            rejects.append(
                Reject(
                    line=batch.lines[outcome.index],
                    kpi=outcome.kpi or _text(batch.readings[outcome.index].get("kpi")),
                    reading_id=outcome.reading_id
                    or _text(batch.readings[outcome.index].get("reading_id")),
                    reason=outcome.reason or "rejected (no reason given)",
                )
            )
    for reject in sorted(rejects, key=lambda reject: reject.line):
        summary.add_reject(reject)
    summary.rows += batch.rows
    summary.batches += 1


def _text(cell: object) -> str | None:
    return cell if isinstance(cell, str) and cell else None


def run_import(
    file: Path, batch_size: int, settings: CliSettings, console: Console
) -> ImportSummary:
    """Stream the file to the metrics service; on a failure halfway, say how far it got."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    summary = ImportSummary(file=str(file), keep_all_rejects=settings.json_output)
    show_progress = not settings.json_output and console.is_terminal
    with (
        ReadingsCsv(file) as readings_csv,
        ServiceClient(
            "metrics",
            settings.metrics_url,
            settings.token,
            actor=settings.actor,
            correlation_id=f"okr-import-{uuid.uuid4()}",
        ) as client,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not show_progress,
        ) as progress,
    ):
        task = progress.add_task(f"importing {file.name}", total=readings_csv.size)
        try:
            for batch in readings_csv.batches(batch_size):
                send_batch(client, batch, summary)
                progress.update(
                    task,
                    completed=readings_csv.bytes_read,
                    description=f"{summary.rows:,} rows",
                )
        except CliError as error:
            if not summary.rows:
                raise
            raise CliError(
                f"{error} (stopped after {summary.rows:,} rows, {summary.recorded:,} recorded; "
                f"importing the file again is safe: recorded readings count as duplicates)"
            ) from error
    return summary


def show_summary(summary: ImportSummary, console: Console) -> None:
    """The totals, then the first rejected rows with their lines and reasons."""
    console.print(Text(f"Readings imported from {summary.file}", style="bold"))
    totals = Table(show_header=False)
    totals.add_column("what")
    totals.add_column("rows", justify="right")
    for label, count in (
        ("rows read", summary.rows),
        ("recorded", summary.recorded),
        ("duplicates", summary.duplicates),
        ("rejected", summary.rejected),
    ):
        totals.add_row(label, f"{count:,}")
    console.print(totals)
    if not summary.rejects:
        return
    shown = summary.rejects[:REJECTS_SHOWN]
    rejects = Table(title=f"Rejected rows (first {len(shown)} of {summary.rejected:,})")
    rejects.add_column("line", justify="right")
    rejects.add_column("kpi")
    rejects.add_column("reason")
    for reject in shown:
        # Text, not markup: a reason may contain [brackets] that rich would swallow.
        rejects.add_row(str(reject.line), Text(reject.kpi or ""), Text(reject.reason))
    console.print(rejects)
    hidden = summary.rejected - len(shown)
    if hidden:
        console.print(Text(f"... and {hidden:,} more rejected rows: --json lists them all"))


@app.command("import")
def import_readings(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row: kpi,value,observed_at,source and optionally "
            "reading_id,unit, in any order. observed_at is ISO-8601 with a timezone.",
            show_default=False,
        ),
    ],
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help=f"Readings per request, 1 to {MAX_BATCH_SIZE:,}.",
        ),
    ] = DEFAULT_BATCH_SIZE,
    fail_on_reject: Annotated[
        bool,
        typer.Option(
            "--fail-on-reject",
            help=f"Exit with code {EXIT_REJECTED} when the service rejected any row.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Import KPI readings from a CSV file into the metrics service.

    Exit code 0 when the import ran, even with rejected rows (listed by line in the summary),
    1 when it could not run, 2 with --fail-on-reject when the service rejected any row.

    Importing a file again is safe: the readings already recorded count as duplicates.
    """
    settings = settings_of(ctx, json_output, writes=True)
    console = Console()
    with one_line_errors():
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CliError(
                f"--batch-size must be between 1 and {MAX_BATCH_SIZE:,}, not {batch_size}"
            )
        summary = run_import(file, batch_size, settings, console)
    if settings.json_output:
        typer.echo(json.dumps(summary.as_json(), indent=2))
    else:
        show_summary(summary, console)
    if fail_on_reject and summary.rejected:
        raise typer.Exit(EXIT_REJECTED)
