"""What every ``okr`` command shares: where the services are, the caller's token, whether to
answer a person or a machine, and how to fail.

Commands never read the environment themselves: the root callback gathers the options and
environment variables once into ``CliSettings``. So a later command (``okr objective``,
``okr verify``) gets the same URLs, token and error style without repeating them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from getpass import getuser
from typing import Annotated
from urllib.parse import urlsplit

import typer

DEFAULT_GOAL_URL = "http://127.0.0.1:8001"
DEFAULT_METRICS_URL = "http://127.0.0.1:8002"
DEFAULT_ALIGNMENT_URL = "http://127.0.0.1:8003"
GOAL_URL_VARIABLE = "OKR_GOAL_URL"
METRICS_URL_VARIABLE = "OKR_METRICS_URL"
ALIGNMENT_URL_VARIABLE = "OKR_ALIGNMENT_URL"
#: Read from the environment only: a token given as an option would show in `ps` and history.
TOKEN_VARIABLE = "OKR_TOKEN"
#: Who makes the changes, recorded on every event they cause (default: the login name). The
#: services count it only when authentication is off: with a token, its name is the actor.
ACTOR_VARIABLE = "OKR_ACTOR"
#: What a command that writes says when both are set.
ACTOR_IGNORED = (
    f"warning: {ACTOR_VARIABLE} is ignored: with {TOKEN_VARIABLE} set, the services record the "
    "token's name as the actor"
)

#: The command could not run (service down, bad input file, bad option).
EXIT_FAILED = 1

MetricsUrlOption = Annotated[
    str,
    typer.Option(
        "--metrics-url",
        envvar=METRICS_URL_VARIABLE,
        help="Base URL of the metrics service (KPIs and readings).",
    ),
]
GoalUrlOption = Annotated[
    str,
    typer.Option(
        "--goal-url",
        envvar=GOAL_URL_VARIABLE,
        help="Base URL of the goal service (objectives and key results).",
    ),
]
AlignmentUrlOption = Annotated[
    str,
    typer.Option(
        "--alignment-url",
        envvar=ALIGNMENT_URL_VARIABLE,
        help="Base URL of the alignment service (scores, tree, gaps).",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Answer in JSON on stdout for scripts: no progress bar, no tables.",
    ),
]


class CliError(Exception):
    """Why a command could not run, said in one line a person can act on (exit code 1).

    Raised instead of printing so that code deep inside a command (CSV parsing, HTTP) stays
    testable and the wording and exit code are decided in one place, ``one_line_errors``.
    """


@dataclass(frozen=True)
class CliSettings:
    """The options every command may need, gathered once by the root callback."""

    goal_url: str = DEFAULT_GOAL_URL
    metrics_url: str = DEFAULT_METRICS_URL
    alignment_url: str = DEFAULT_ALIGNMENT_URL
    token: str | None = None
    json_output: bool = False
    #: ``OKR_ACTOR`` when it is set.
    chosen_actor: str | None = field(default_factory=lambda: os.environ.get(ACTOR_VARIABLE) or None)

    @property
    def actor(self) -> str:
        """Who makes the changes, as ``X-Actor`` tells the services."""
        return self.chosen_actor or getuser()

    @classmethod
    def configure(
        cls,
        *,
        goal_url: str,
        metrics_url: str,
        json_output: bool,
        token: str | None,
        alignment_url: str = DEFAULT_ALIGNMENT_URL,
    ) -> CliSettings:
        """Check the URLs now, so a typo is one clear error rather than a connection failure."""
        return cls(
            goal_url=_base_url(goal_url, "--goal-url"),
            metrics_url=_base_url(metrics_url, "--metrics-url"),
            alignment_url=_base_url(alignment_url, "--alignment-url"),
            token=token or None,
            json_output=json_output,
        )

    @classmethod
    def from_environment(cls) -> CliSettings:
        """Settings when a sub-app runs without the root callback (embedded or in a test)."""
        return cls.configure(
            goal_url=os.environ.get(GOAL_URL_VARIABLE, DEFAULT_GOAL_URL),
            metrics_url=os.environ.get(METRICS_URL_VARIABLE, DEFAULT_METRICS_URL),
            alignment_url=os.environ.get(ALIGNMENT_URL_VARIABLE, DEFAULT_ALIGNMENT_URL),
            json_output=False,
            token=os.environ.get(TOKEN_VARIABLE),
        )


def _base_url(url: str, option: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"{option} {url!r} is not an http(s) URL such as http://host:port")
    return url.strip().rstrip("/")


def settings_of(
    ctx: typer.Context, json_output: bool = False, *, writes: bool = False
) -> CliSettings:
    """The root callback's settings, with the command's own ``--json`` added.

    ``--json`` is accepted both before and after the subcommand, so ``okr --json readings
    import f.csv`` and ``okr readings import f.csv --json`` mean the same thing. A command
    that ``writes`` warns on stderr when ``OKR_ACTOR`` is set but the token decides the actor:
    the history will name the token, not whom ``OKR_ACTOR`` names, and nothing else says so.
    """
    settings = ctx.find_object(CliSettings)
    if settings is None:
        with one_line_errors():
            settings = CliSettings.from_environment()
    if writes and settings.token and settings.chosen_actor:
        typer.echo(ACTOR_IGNORED, err=True)
    return replace(settings, json_output=settings.json_output or json_output)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a ``CliError`` into one line on stderr and exit code 1, never a traceback: the
    reader is a person at a terminal or a script checking the exit code."""
    try:
        yield
    except CliError as error:
        message = " ".join(str(error).split())
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
