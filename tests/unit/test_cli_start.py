"""``okr`` starts quickly: asking for help loads none of the modules that only a command's work
needs (HTTP, validation, the services' rules, Kafka, the demo data). In a fresh interpreter,
since this test session has loaded them all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Each a large part of the start-up when it was imported with the command modules.
LOADED_WHEN_NEEDED = (
    "httpx",
    "aiokafka",
    "fastapi",
    "eventsourcing",
    "asyncio",
    "rich.progress",
    "rich.tree",
    "services.alignment",
    "services.shared",
    "services.demo",
)
HELP = """
import sys

from services.cli import app

try:
    app(sys.argv[1:], prog_name="okr")
except SystemExit as end:
    assert end.code == 0, end.code
print("loaded:", *(name for name in {unneeded!r} if name in sys.modules))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["kpi", "--help"],
        ["kpi", "show", "--help"],
        ["readings", "import", "--help"],
        ["replay", "--help"],
        ["demo", "--help"],
    ],
    ids=" ".join,
)
def test_help_loads_only_what_showing_help_needs(args: list[str]) -> None:
    # Below the top level, typer itself converts the options' values with pydantic.
    unneeded = (*LOADED_WHEN_NEEDED, "pydantic") if args == ["--help"] else LOADED_WHEN_NEEDED
    shown = subprocess.run(
        [sys.executable, "-c", HELP.format(unneeded=unneeded), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert "Usage: okr" in shown.stdout
    assert shown.stdout.splitlines()[-1] == "loaded:"
