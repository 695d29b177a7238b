"""docker-compose.yml is a real deployment: validated by docker-compose itself, and wired to
modules and files that exist. (No Docker engine runs on development machines.)"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose missing: apt-get install docker-compose (make test does it as root)",
)
def test_compose_file_is_valid_for_docker_compose() -> None:
    run = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_every_python_command_names_an_existing_module() -> None:
    commands = [
        service["command"]
        for service in compose()["services"].values()
        if service.get("command", [None])[0] == "python"
    ]
    assert commands, "no service runs our image"
    for command in commands:
        assert command[1] == "-m"
        assert importlib.util.find_spec(command[2]) is not None, command


def test_services_build_from_the_dockerfile_and_keep_data_in_volumes() -> None:
    services = compose()["services"]
    assert (ROOT / "Dockerfile").exists()
    goal = services["goal"]
    assert "goal-data:/data" in goal["volumes"]
    assert goal["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_every_mounted_file_exists() -> None:
    mounts = [
        volume.split(":")[0]
        for service in compose()["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert mounts, "the compose file mounts no project files"
    missing = [mount for mount in mounts if not (ROOT / mount).exists()]
    assert missing == []


def test_each_service_has_its_port_and_store() -> None:
    services = compose()["services"]
    for name, port in (("goal", 8001), ("metrics", 8002), ("alignment", 8003)):
        assert f"{port}:{port}" in services[name]["ports"]
        assert f"{name}-data:/data" in services[name]["volumes"]
