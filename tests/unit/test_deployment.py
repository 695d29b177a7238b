"""The container image and docker-compose.yml are a real deployment: validated by docker-compose
itself, wired to modules, files and settings that exist, with secrets only from .env. (No
Docker engine runs on development machines, so nothing here starts a container.)"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from services.shared.local_broker import KAFKA_SETTINGS, ApacheKafka, free_port, kafka_version
from services.shared.settings import DEFAULT_PORTS, Settings
from services.web.settings import WEB_PORT

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
INIT_SCRIPT = ROOT / "deploy/postgres/initdb.d/10-service-databases.sh"
APP_SERVICES = tuple(DEFAULT_PORTS)

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose missing: apt-get install docker-compose (make test does it as root)",
)


def compose() -> dict[str, Any]:
    """The file as written (YAML merge keys resolved, ${VARIABLES} not substituted)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def env_file_variables(path: Path) -> dict[str, str]:
    """NAME=value lines of an env file (comments and blank lines skipped)."""
    variables = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            variables[name.strip()] = value.strip()
    return variables


def compose_variables() -> set[str]:
    """Every variable docker-compose.yml substitutes (``$$`` is a literal dollar; comments,
    such as the commented-out cipher key, are not read by docker-compose)."""
    lines = [
        line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    text = "\n".join(lines).replace("$$", "")
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))


def run_compose(env_file: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    # Variables of the calling shell win over the env file: drop them so the file decides.
    environment = {
        name: value for name, value in os.environ.items() if name not in compose_variables()
    }
    return subprocess.run(
        ["docker-compose", "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        check=False,
    )


def resolved() -> dict[str, Any]:
    """The configuration docker-compose derives with the example .env."""
    run = run_compose(ENV_EXAMPLE, "config")
    assert run.returncode == 0, run.stderr
    loaded: dict[str, Any] = yaml.safe_load(run.stdout)
    return loaded


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> project path, for the service's mounts of project files."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith(("./", "/")):
            mounts[target] = source
    return mounts


def one_shot_jobs() -> set[str]:
    """Services that others wait for to finish (topic creation), not to be healthy."""
    return {
        name
        for service in services().values()
        for name, condition in (service.get("depends_on") or {}).items()
        if isinstance(condition, dict)
        and condition.get("condition") == "service_completed_successfully"
    }


# docker-compose itself


@needs_compose
def test_compose_file_is_valid_with_the_example_env_file() -> None:
    run = run_compose(ENV_EXAMPLE, "config", "--quiet")
    assert run.returncode == 0, run.stderr


@needs_compose
@pytest.mark.parametrize(
    "secret",
    sorted(name for name in env_file_variables(ENV_EXAMPLE) if name.endswith("PASSWORD")),
)
def test_compose_refuses_to_run_without_each_password(secret: str, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    kept = {name: value for name, value in env_file_variables(ENV_EXAMPLE).items()}
    del kept[secret]
    env_file.write_text("".join(f"{name}={value}\n" for name, value in kept.items()))
    run = run_compose(env_file, "config", "--quiet")
    assert run.returncode != 0
    assert f"set {secret} in .env" in run.stderr


@needs_compose
def test_each_service_has_a_postgres_database_and_role_of_its_own() -> None:
    config = resolved()["services"]
    postgres_env = config["postgres"]["environment"]
    for name in APP_SERVICES:
        env = config[name]["environment"]
        assert env["OKR_PERSISTENCE"] == "postgres"
        assert env["OKR_POSTGRES_HOST"] == "postgres"
        assert env["OKR_POSTGRES_DBNAME"] == env["OKR_POSTGRES_USER"] == f"okr_{name}"
        # The same secret creates the role (init script) and logs the service in.
        assert env["OKR_POSTGRES_PASSWORD"] == postgres_env[f"{name.upper()}_DB_PASSWORD"]
        assert config[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    passwords = {config[name]["environment"]["OKR_POSTGRES_PASSWORD"] for name in APP_SERVICES}
    assert len(passwords) == len(APP_SERVICES)


@needs_compose
def test_published_ports_bind_to_loopback_by_default() -> None:
    published = {name: service.get("ports", []) for name, service in resolved()["services"].items()}
    for name, port in DEFAULT_PORTS.items():
        assert f"127.0.0.1:{port}:{port}/tcp" in published[name]
    assert published["postgres"] == [], "the database is reached on the compose network only"
    for name, ports in published.items():
        assert all(port.startswith("127.0.0.1:") for port in ports), name


# Wiring of the compose file


def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy() -> None:
    jobs = one_shot_jobs()
    for name, service in services().items():
        if name in jobs:
            continue
        assert service.get("restart") in ("always", "unless-stopped"), name
        healthcheck = service.get("healthcheck", {})
        assert not healthcheck.get("disable"), name
        assert healthcheck.get("test"), f"{name} has no healthcheck"


def test_the_topic_step_runs_once_before_every_service() -> None:
    assert one_shot_jobs() == {"topics"}
    topics = services()["topics"]
    assert topics["restart"] == "no"
    assert topics["command"] == ["python", "-m", "services.shared.broker"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        assert "topics" in services()[name]["depends_on"], name


def test_app_services_check_their_own_port() -> None:
    for name, port in DEFAULT_PORTS.items():
        service = services()[name]
        assert service["environment"]["OKR_HTTP_PORT"] == str(port)
        assert "/healthz" in " ".join(service["healthcheck"]["test"])
        assert "OKR_HTTP_PORT" in " ".join(service["healthcheck"]["test"])


def test_every_python_command_names_an_existing_module() -> None:
    commands = [
        service["command"]
        for service in services().values()
        if service.get("command", [None])[0] == "python"
    ]
    assert len(commands) == len(APP_SERVICES) + 2, "the services, the console, the topic step"
    for command in commands:
        assert command[1] == "-m"
        assert importlib.util.find_spec(command[2]) is not None, command
    started = {command[2] for command in commands}
    assert started >= {f"services.{name}" for name in APP_SERVICES}


def test_the_web_console_reaches_each_service_where_compose_runs_it() -> None:
    web = services()["web"]
    assert web["command"] == ["python", "-m", "services.web"]
    environment = web["environment"]
    for name, port in DEFAULT_PORTS.items():
        assert environment[f"OKR_{name.upper()}_URL"] == f"http://{name}:{port}"
        assert web["depends_on"][name]["condition"] == "service_healthy"
    # The same tokens as the services: it tells who signs in, the services what they may do.
    assert environment["OKR_AUTH_TOKENS"] == services()["goal"]["environment"]["OKR_AUTH_TOKENS"]
    assert environment["OKR_HTTP_PORT"] == "8000"
    assert "postgres" not in web["depends_on"], "the console keeps no store"


def test_every_bind_mount_points_to_an_existing_path() -> None:
    mounts = [source for service in services().values() for source in bind_mounts(service).values()]
    assert len(mounts) >= 5, "postgres init, prometheus config and rules, grafana twice"
    assert [mount for mount in mounts if not (ROOT / mount).exists()] == []


def test_every_named_volume_is_declared() -> None:
    declared = set(compose()["volumes"])
    used = {
        volume.split(":")[0]
        for service in services().values()
        for volume in service.get("volumes", [])
        if not volume.startswith(("./", "/"))
    }
    assert used == declared
    assert {"kafka-data", "postgres-data", "prometheus-data", "grafana-data"} <= used


def test_no_password_literal_appears_in_the_compose_file() -> None:
    secret_name = re.compile(r"PASSWORD|SECRET|TOKEN|CIPHER_KEY")
    # Required (``${X:?why}``), or optional with no default (``${X:-}``): never a value.
    required_reference = re.compile(r"\$\{[A-Z0-9_]+(:\?[^}]+|:-)\}")
    checked = 0
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if secret_name.search(key):
                checked += 1
                assert required_reference.fullmatch(str(value)), f"{name}: {key}"
    assert checked >= 8, "postgres, its three roles, the services' passwords, grafana"
    text = COMPOSE_FILE.read_text()
    examples = [v for k, v in env_file_variables(ENV_EXAMPLE).items() if k.endswith("PASSWORD")]
    assert [value for value in examples if value in text] == []


def test_every_variable_in_compose_is_defined_in_the_example_env() -> None:
    referenced = compose_variables()
    defined = set(env_file_variables(ENV_EXAMPLE))
    assert referenced, "the compose file takes nothing from .env"
    assert sorted(referenced - defined) == []
    assert sorted(defined - referenced) == [], "stale entries in .env.example"


def test_example_secrets_are_obvious_placeholders() -> None:
    secrets = {
        name: value
        for name, value in env_file_variables(ENV_EXAMPLE).items()
        if name.endswith("PASSWORD")
    }
    assert len(secrets) == 5
    assert {name: value for name, value in secrets.items() if "change-me" not in value} == {}
    assert "OKR_CIPHER_KEY" in ENV_EXAMPLE.read_text(), "the encryption key placeholder"


def test_third_party_images_are_pinned_to_a_release() -> None:
    for name, service in services().items():
        if "build" in service:
            continue  # built here from the Dockerfile
        image = service["image"]
        # A release, not a moving tag (PostgreSQL numbers its releases major.minor).
        assert re.search(r":v?\d+\.\d+(\.\d+)?(-[a-z0-9]+)?$", image), f"{name}: {image}"


def test_kafka_is_a_single_node_kraft_broker_the_services_reach() -> None:
    kafka = services()["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for setting in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
    ):
        assert kafka[setting] == 1, setting
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name in (*APP_SERVICES, "topics"):
        bootstrap = services()[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
        assert f"INTERNAL://{bootstrap}" in advertised, name


#: Compose settings that say where this one broker listens and keeps its files: the test
#: broker sets its own (a free port, a temporary folder) by nature.
KAFKA_PLACEMENT = {
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "controller.listener.names",
    "controller.quorum.voters",
    "log.dirs",
}


def test_the_test_broker_runs_with_the_settings_of_compose() -> None:
    """The broker the tests, the fault suite and the bench start is production's broker: the
    same release and the same settings (the image's ``KAFKA_A_B`` is the property ``a.b``)."""
    kafka = services()["kafka"]
    image, release = kafka["image"].split(":")
    assert image == "apache/kafka"
    assert release == kafka_version()
    compose_settings = {
        name.removeprefix("KAFKA_").lower().replace("_", "."): str(value)
        for name, value in kafka["environment"].items()
        if name.startswith("KAFKA_")
    }
    placement = {name: compose_settings.pop(name) for name in KAFKA_PLACEMENT}
    assert compose_settings == KAFKA_SETTINGS
    assert placement["log.dirs"]  # the placement names are compose's own


def test_the_test_broker_sets_where_it_listens_and_nothing_else() -> None:
    properties = ApacheKafka(Path("/nonexistent"), port=1).properties()
    assert set(properties) == set(KAFKA_SETTINGS) | KAFKA_PLACEMENT
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1"


def test_prometheus_scrapes_the_services_where_compose_runs_them() -> None:
    prometheus = services()["prometheus"]
    mounts = bind_mounts(prometheus)
    config_path = next(
        target for target in mounts if f"--config.file={target}" in prometheus["command"]
    )
    config = yaml.safe_load((ROOT / mounts[config_path]).read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{name}:{port}" for name, port in DEFAULT_PORTS.items()} | {
        f"web:{WEB_PORT}"
    }
    # Rule files are resolved next to the configuration, inside the container.
    for pattern in config["rule_files"]:
        directory = str(PurePosixPath(config_path).parent / PurePosixPath(pattern).parent)
        assert directory in mounts, pattern
        assert list((ROOT / mounts[directory]).glob(PurePosixPath(pattern).name)), pattern


def test_grafana_is_provisioned_with_the_compose_prometheus_and_dashboards() -> None:
    grafana = services()["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "prometheus" in services()
    provider = yaml.safe_load((provisioning / "dashboards/okr.yml").read_text())
    dashboards = provider["providers"][0]["options"]["path"]
    assert dashboards in mounts
    assert list((ROOT / mounts[dashboards]).glob("*.json"))


# The Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and ARG defaults substituted."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    arguments: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            arguments[name.strip()] = default.strip()
        for name, value in arguments.items():
            rest = rest.replace(f"${{{name}}}", value).replace(f"${name}", value)
        instructions.append((keyword, rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_on_a_pinned_base() -> None:
    stages = [rest.split() for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert len(stages) >= 2, "a build stage and a slim final stage"
    for stage in stages:
        image = stage[0]
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", image), image
    assert any(
        keyword == "COPY" and rest.startswith("--from=") for keyword, rest in final_stage()
    ), "the final stage takes what the build stage installed"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_starts_a_service_and_checks_its_health() -> None:
    commands = [json.loads(rest) for keyword, rest in final_stage() if keyword == "CMD"]
    assert commands[-1][:2] == ["python", "-m"]
    assert importlib.util.find_spec(commands[-1][2]) is not None
    assert [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]


def test_the_image_exposes_every_process_port_the_console_included() -> None:
    exposed = {
        int(port) for keyword, rest in final_stage() if keyword == "EXPOSE" for port in rest.split()
    }
    assert exposed == set(DEFAULT_PORTS.values()) | {WEB_PORT}


def healthcheck_command() -> list[str]:
    (healthcheck,) = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    command: list[str] = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    return command


class _Alive(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def live_service() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Alive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_image_healthcheck_tells_a_live_service_from_a_dead_one(live_service: int) -> None:
    command = healthcheck_command()
    assert command[0] == "python"

    def check(port: int) -> int:
        env = os.environ | {"OKR_HTTP_PORT": str(port)}
        run = subprocess.run([sys.executable, *command[1:]], env=env, check=False, timeout=30)
        return run.returncode

    assert check(live_service) == 0
    assert check(free_port()) != 0


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", "var", ".git"} <= ignored


# PostgreSQL initialisation


FAKE_PSQL = """#!{python}
import json, os, sys
with open(os.environ["PSQL_CALLS"], "a") as calls:
    calls.write(json.dumps({{"args": sys.argv[1:], "stdin": sys.stdin.read()}}) + "\\n")
"""


def run_init_script(tmp_path: Path, passwords: dict[str, str]) -> tuple[int, list[Any]]:
    """Run the init script with a psql that records its calls instead of connecting."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    psql = bin_dir / "psql"
    psql.write_text(FAKE_PSQL.format(python=sys.executable))
    psql.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "POSTGRES_USER": "postgres",
        "PSQL_CALLS": str(calls),
        **passwords,
    }
    run = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, check=False, capture_output=True)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return run.returncode, [json.loads(line) for line in lines]


def test_postgres_init_script_is_mounted_and_executable() -> None:
    mounts = bind_mounts(services()["postgres"])
    assert (ROOT / mounts["/docker-entrypoint-initdb.d"]) == INIT_SCRIPT.parent
    # The image sources a .sh that is not executable, and our `set -e` would then leak
    # into its entrypoint.
    assert os.access(INIT_SCRIPT, os.X_OK)


def test_postgres_init_script_creates_a_database_and_role_per_service(tmp_path: Path) -> None:
    passwords = {
        "GOAL_DB_PASSWORD": "g0al'; DROP ROLE postgres; --",
        "METRICS_DB_PASSWORD": 'metrics"pw',
        "ALIGNMENT_DB_PASSWORD": "alignment pw",
    }
    returncode, calls = run_init_script(tmp_path, passwords)
    assert returncode == 0
    created = {}
    for call in calls:
        options = dict(
            arg.removeprefix("--set=").split("=", 1)
            for arg in call["args"]
            if arg.startswith("--set=")
        )
        assert 'CREATE DATABASE :"name" OWNER :"name"' in call["stdin"]
        assert "PASSWORD :'password'" in call["stdin"], "quoted by psql, not by the shell"
        created[options["name"]] = options["password"]
    assert created == {
        f"okr_{name}": passwords[f"{name.upper()}_DB_PASSWORD"] for name in APP_SERVICES
    }


def test_postgres_init_script_stops_without_a_password(tmp_path: Path) -> None:
    returncode, calls = run_init_script(
        tmp_path, {"GOAL_DB_PASSWORD": "x", "METRICS_DB_PASSWORD": "y"}
    )
    assert returncode != 0
    assert len(calls) == 2, "goal and metrics created, alignment not"


# The documentation: the configuration reference is complete, and links lead somewhere

OPERATIONS_DOC = ROOT / "docs/operations.md"
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


def doc_section(document: Path, title: str) -> str:
    """The ``## title`` section of a Markdown document, up to the next ``## `` heading."""
    text = document.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_operations_configuration_documents_every_setting() -> None:
    section = doc_section(OPERATIONS_DOC, "Configuration")
    names = []
    for field_name, field in Settings.model_fields.items():
        if field_name == "service":
            continue  # given by the command (python -m services.<name>), not the environment
        alias = field.validation_alias
        names.append(alias if isinstance(alias, str) else f"OKR_{field_name.upper()}")
    assert len(names) > 20
    assert [name for name in names if f"`{name}`" not in section] == []


def test_operations_documents_every_deployment_variable() -> None:
    section = doc_section(OPERATIONS_DOC, "Production deployment (docker-compose)")
    variables = set(env_file_variables(ENV_EXAMPLE))
    assert [name for name in sorted(variables) if f"`{name}`" not in section] == []


def heading_anchors(document: Path) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    anchors, in_code = set(), False
    for line in document.read_text().splitlines():
        in_code ^= line.startswith("```")
        if not in_code and (heading := re.match(r"#{1,6} (.+)", line)):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(slug.replace(" ", "-"))
    return anchors


def test_documentation_links_lead_to_files_and_headings_that_exist() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s) and mailto: not followed here
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists():
                broken.append(f"{document.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                broken.append(f"{document.name}: {target} (no such heading)")
            elif ROOT not in linked.parents:
                broken.append(f"{document.name}: {target} (outside the repository)")
    assert broken == []
