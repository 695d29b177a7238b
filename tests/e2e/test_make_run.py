"""``make run`` on its zero-set-up broker, noida-db: the demo loads, a reading produced by kcat
(a third-party client) moves a key result's value, and Ctrl-C stops everything, the broker
too. The stack takes its fixed ports (9092, 8001 to 8003), as a user's does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.shared.settings import DEFAULT_PORTS
from tests.support import ROOT, port_open, unavailable, wait_for

pytestmark = pytest.mark.e2e

BROKER = "127.0.0.1:9092"
ALIGNMENT = f"http://127.0.0.1:{DEFAULT_PORTS['alignment']}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    if shutil.which("kcat") is None:
        unavailable("kcat is not installed (apt-get install kcat)")
    taken = [port for port in (9092, *DEFAULT_PORTS.values()) if port_open(port)]
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
    tokens = dict(
        line.removeprefix("export ").split("=", 1)
        for line in (root / "var" / "tokens.env").read_text().splitlines()
        if line.startswith("export OKR_TOKEN_")
    )
    reader = tokens["OKR_TOKEN_READER"]
    wait_for(lambda: churn_value(reader) == 6.2, within=60, what="the demo's churn scored")

    reading = (
        '{"kpi": "churn_rate", "value": 5.9, "source": "billing", '
        f'"observed_at": "{datetime.now(UTC).isoformat()}"}}'
    )
    subprocess.run(
        ["kcat", "-P", "-b", BROKER, "-t", "kpi.readings", "-k", "churn_rate"],
        input=reading.encode(),
        check=True,
        timeout=60,
    )
    wait_for(lambda: churn_value(reader) == 5.9, within=60, what="the kcat reading scored")

    process.send_signal(signal.SIGINT)
    assert process.wait(120) == 0
    assert not port_open(9092), "the broker outlived make run"
    assert not any(port_open(port) for port in DEFAULT_PORTS.values())
