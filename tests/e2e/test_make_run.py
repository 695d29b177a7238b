"""``make run`` on its zero-set-up broker, noida-db: the demo loads, a reading produced by kcat
(a third-party client) moves a key result's value, and Ctrl-C stops everything, the broker
too. The stack takes its fixed ports (9092, 8001 to 8003), as a user's does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from getpass import getuser
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.shared.local_broker import port_open
from services.shared.settings import DEFAULT_PORTS
from services.stack import PORTS
from tests.support import ROOT, unavailable, wait_for

pytestmark = pytest.mark.e2e

BROKER = "127.0.0.1:9092"
ALIGNMENT = f"http://127.0.0.1:{DEFAULT_PORTS['alignment']}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    if shutil.which("kcat") is None:
        unavailable("kcat is not installed (apt-get install kcat)")
    taken = [port for port in (9092, *PORTS.values()) if port_open(port)]
    assert not taken, f"ports {taken} are taken: stop what runs there (another make run?)"
    output = tmp_path / "stack.out"
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "KAFKA_BOOTSTRAP_SERVERS" and not name.startswith("OKR_")
    }
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.stack"],
            cwd=tmp_path,  # its var/ goes there
            env=env | {"PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: b"OKR platform is running" in output.read_bytes() or process.poll() is not None,
            within=180,
            what="make run's banner",
        )
        assert process.poll() is None, output.read_text()
        yield process, tmp_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(120)


def local_tokens(root: Path) -> dict[str, str]:
    """The assignments of the stack's ``var/tokens.env``, by variable."""
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in (root / "var" / "tokens.env").read_text().splitlines()
        if line.startswith("export OKR_TOKEN")
    )


def churn_value(token: str) -> Any:
    tree = httpx.get(
        f"{ALIGNMENT}/tree", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    stack = list(tree)
    while stack:
        node = stack.pop()
        stack.extend(node.get("children", []))
        for key_result in node["key_results"]:
            if key_result["title"].startswith("Reduce churn"):
                return key_result["value"]
    return None


def test_make_run_loads_the_demo_and_a_kcat_reading_moves_a_score(
    stack: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, root = stack
    tokens = local_tokens(root)
    reader = tokens["OKR_TOKEN_READER"]
    wait_for(lambda: churn_value(reader) == 6.2, within=60, what="the demo's churn scored")

    # The banner's own example, as a user pastes it: a reading observed now, keyed by its KPI.
    banner = (root / "stack.out").read_text()
    example = next(line.strip() for line in banner.splitlines() if "kcat -P" in line)
    assert "-k churn_rate" in example
    subprocess.run(["bash", "-c", example], check=True, timeout=60)
    wait_for(lambda: churn_value(reader) == 5.9, within=60, what="the kcat reading scored")

    # The banner names the web console and how to sign in; the console serves its form.
    assert "console    http://127.0.0.1:8000" in banner
    assert "$OKR_TOKEN" in banner
    signin = httpx.get(f"http://127.0.0.1:{PORTS['web']}/signin", timeout=10)
    assert signin.status_code == 200
    assert 'name="token"' in signin.text

    process.send_signal(signal.SIGINT)
    assert process.wait(120) == 0
    assert not port_open(9092), "the broker outlived make run"
    assert not any(port_open(port) for port in PORTS.values())


def okr(root: Path, token: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *arguments],
        cwd=root,
        env=os.environ | {"OKR_TOKEN": token, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_local_token_is_the_users_own_and_runs_every_command(
    stack: tuple[subprocess.Popen[bytes], Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, root = stack
    tokens = local_tokens(root)
    token = tokens["OKR_TOKEN"]
    assert tokens["OKR_TOKEN_OWNER"] == getuser()

    objectives = httpx.get(
        f"http://127.0.0.1:{DEFAULT_PORTS['goal']}/objectives",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    history = okr(root, token, "history", objectives[0]["id"], "--format", "jsonl")
    assert history.returncode == 0, history.stderr
    actors = {json.loads(line)["actor"] for line in history.stdout.splitlines() if line}
    assert actors == {getuser()}, "history names the person, not a role"
    verified = okr(root, token, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # A second make run refuses at once, in one line, and starts nothing.
    second = tmp_path_factory.mktemp("second")
    refused = subprocess.run(
        [sys.executable, "-m", "services.stack"],
        cwd=second,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "error: ports 8000, 8001, 8002, 8003 are taken: is `make run` already running? "
        "Stop it (Ctrl-C in its terminal) first."
    ]
    assert not (second / "var").exists()
