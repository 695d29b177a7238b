"""``make run``: the whole system on one machine, embedded.

Starts a broker on port 9092 (unless ``KAFKA_BOOTSTRAP_SERVERS`` points at one): noida-db
from its wheel by default, Apache Kafka from its Maven Central jars with ``--broker kafka``
(``make run BROKER=kafka``). Then it creates the topics, starts each service on
SQLite under the data directory, loads the demo OKRs, prints where everything is, and stops
everything in order on Ctrl-C. State lives under ``var/`` and survives restarts, and so do
the local bearer tokens (``var/tokens.env``), made at the first run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from getpass import getuser
from pathlib import Path
from types import FrameType

import httpx

from services import demo
from services.shared import long_poll
from services.shared.auth import TOKEN_ENTRIES, Role, TokenEntry, hash_token, new_token
from services.shared.broker import broker_answers, ensure_topics
from services.shared.local_broker import BrokerKind, LocalBroker, local_broker, port_open
from services.shared.settings import DEFAULT_PORTS, Settings
from services.web.settings import WEB_PORT

#: The services, in start order.
SERVICES = ("goal", "metrics", "alignment")
#: Every process started, by the port it serves: the services, then the web console.
PORTS = DEFAULT_PORTS | {"web": WEB_PORT}
PROMETHEUS_CONFIG = Path(__file__).resolve().parent.parent / "deploy/prometheus/prometheus.yml"
PROMETHEUS_ADDRESS = "127.0.0.1:9090"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class LocalTokens:
    """The bearer tokens of ``make run``: the local user's own, with every role, so that
    history names them and every command of the README works; and a read-only one, to see
    what a reader may do. Kept in ``var/tokens.env`` (readable by the owner only) as shell
    assignments, made at the first run."""

    owner: str
    token: str
    reader_token: str

    READER = "reader"

    @classmethod
    def load(cls, path: Path) -> LocalTokens:
        assignments = (
            dict(
                line.removeprefix("export ").split("=", 1)
                for line in path.read_text().splitlines()
                if line.startswith("export OKR_TOKEN")
            )
            if path.exists()
            else {}
        )
        if {"OKR_TOKEN_OWNER", "OKR_TOKEN", "OKR_TOKEN_READER"} <= assignments.keys():
            return cls(
                assignments["OKR_TOKEN_OWNER"],
                assignments["OKR_TOKEN"],
                assignments["OKR_TOKEN_READER"],
            )
        # None yet, or an older file whose tokens were named after roles: make them anew.
        owner = getuser()
        tokens = cls(
            owner, new_token(owner, list(Role))[0], new_token(cls.READER, [Role.reader])[0]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(
            "# Local bearer tokens of `make run`; source this file. OKR_TOKEN is yours, with\n"
            "# every role (okr and the README's examples use it); OKR_TOKEN_READER may only read.\n"
            f"export OKR_TOKEN_OWNER={tokens.owner}\n"
            f"export OKR_TOKEN={tokens.token}\n"
            f"export OKR_TOKEN_READER={tokens.reader_token}\n"
        )
        return tokens

    def entries(self) -> str:
        """``OKR_AUTH_TOKENS`` for the services: the tokens' hashes, never the tokens."""
        return TOKEN_ENTRIES.dump_json(
            [
                TokenEntry(name=self.owner, roles=list(Role), sha256=hash_token(self.token)),
                TokenEntry(
                    name=self.READER, roles=[Role.reader], sha256=hash_token(self.reader_token)
                ),
            ]
        ).decode()


def kcat_reading_example(bootstrap: str) -> str:
    """A shell line producing a reading of the demo's churn KPI, observed when it runs."""
    return (
        'echo "{\\"kpi\\": \\"churn_rate\\", \\"value\\": 5.9, \\"source\\": \\"billing\\", '
        '\\"observed_at\\": \\"$(date -u +%FT%TZ)\\"}" '
        f"| kcat -P -b {bootstrap} -t kpi.readings -k churn_rate"
    )


class Stack:
    def __init__(self, root: Path, broker_kind: BrokerKind = "noida") -> None:
        self.root = root
        self.settings = Settings()
        self.broker_kind: BrokerKind = broker_kind
        self.broker: LocalBroker | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Optional: not watched like the services (it may fail on a taken port alone).
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.logs = root / "logs"
        self.tokens_file = root / "tokens.env"
        self.tokens = LocalTokens.load(self.tokens_file)

    @property
    def bootstrap(self) -> str:
        return (
            self.broker.bootstrap_servers if self.broker else self.settings.kafka_bootstrap_servers
        )

    def start_broker(self) -> None:
        if "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
            print(f"using the broker at {self.bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
            return
        if asyncio.run(broker_answers(self.bootstrap)):
            print(f"a broker already answers on {self.bootstrap}: using it")
            return
        # Each kind keeps its own data: neither can read the other's.
        self.broker = local_broker(self.broker_kind, self.root / self.broker_kind, port=9092)
        print(f"starting {self.broker.program} on {self.broker.bootstrap_servers} ...")
        self.broker.start()

    def start_service(self, name: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "OKR_DATA_DIR": str(self.settings.data_dir),
            "OKR_HTTP_PORT": str(PORTS[name]),
            "OKR_AUTH_TOKENS": self.tokens.entries(),
        }
        if self.broker_kind == "noida":
            env |= {"OKR_KAFKA_EMPTY_FETCH_PAUSE": str(long_poll.EMPTY_FETCH_PAUSE)}
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the stack only; it stops them in order
        )
        log.close()

    def wait_ready(self, name: str) -> None:
        url = f"http://127.0.0.1:{PORTS[name]}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.logs / f'{name}.log'}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{name} not ready after {READY_TIMEOUT:.0f}s; see its log")

    def start_prometheus(self) -> str | None:
        """Prometheus (Debian's package, when installed) scraping the services with the rules
        of deploy/prometheus; returns its address."""
        binary = shutil.which("prometheus")
        if binary is None:
            return None
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / "prometheus.log").open("ab")
        self.prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={PROMETHEUS_CONFIG}",
                f"--storage.tsdb.path={self.root / 'prometheus'}",
                f"--web.listen-address={PROMETHEUS_ADDRESS}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return f"http://{PROMETHEUS_ADDRESS}"

    def stop(self) -> None:
        if self.prometheus is not None and self.prometheus.poll() is None:
            self.prometheus.terminate()
            self.prometheus.wait(20)
            print("stopped prometheus")
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                print(f"stopped {name}")
        if self.broker:
            self.broker.stop()
            print("stopped the broker")

    def banner(self, objectives: int, readings: int, prometheus: str | None) -> str:
        lines = ["", "OKR platform is running:"]
        for name in SERVICES:
            port = DEFAULT_PORTS[name]
            lines.append(f"  {name:<10} http://127.0.0.1:{port}  (API docs: /docs, /metrics)")
        lines += [
            f"  broker     {self.bootstrap}  (topics: goal.events, metrics.events, ...)",
            f"  prometheus {prometheus or 'not installed (apt-get install prometheus)'}",
            f"  data       {self.settings.data_dir.resolve()}   logs: {self.logs.resolve()}",
            "  demo       "
            + (
                f"loaded {objectives} objectives, {readings} KPI readings"
                if objectives or readings
                else "already loaded"
            ),
            f"  tokens     source {self.tokens_file}   (OKR_TOKEN: yours, as "
            f"{self.tokens.owner}, with every role; OKR_TOKEN_READER: read only)",
            f"  console    http://127.0.0.1:{WEB_PORT}  (sign in with a token: "
            f"source {self.tokens_file}; echo $OKR_TOKEN)",
            "",
            "Try:",
            f"  source {self.tokens_file}",
            '  curl -s -H "Authorization: Bearer $OKR_TOKEN" http://127.0.0.1:8001/objectives',
            "  .venv/bin/okr tree",
            "  .venv/bin/okr verify",
            "  # a reading of churn observed now, as an outside system sends one (keyed by KPI):",
            f"  {kcat_reading_example(self.bootstrap)}",
            f"  kcat -C -b {self.bootstrap} -t goal.events -o beginning -e",
            "",
            "Ctrl-C stops everything; state is kept for the next run.",
        ]
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="okr-stack", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--broker",
        choices=["noida", "kafka"],
        default="noida",
        help="the broker to start: noida-db (no set-up) or Apache Kafka (needs Java and Maven)",
    )
    broker_kind = parser.parse_args().broker
    # Before anything starts: a second stack would join the first one's consumer groups.
    taken = [str(port) for port in sorted(PORTS.values()) if port_open(port)]
    if taken:
        sys.exit(
            f"error: ports {', '.join(taken)} are taken: is `make run` already running? "
            "Stop it (Ctrl-C in its terminal) first."
        )
    stack = Stack(Path("var"), broker_kind)
    stopping = False

    def interrupt(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        stack.start_broker()
        created = asyncio.run(
            ensure_topics(
                stack.settings.model_copy(
                    update={"kafka_bootstrap_servers": stack.bootstrap}
                ).kafka_client_options()
            )
        )
        if created:
            print(f"created topics: {', '.join(created)}")
        for name in SERVICES:
            stack.start_service(name)
        for name in SERVICES:
            stack.wait_ready(name)
        token = stack.tokens.token
        readings = demo.load_kpis(f"http://127.0.0.1:{DEFAULT_PORTS['metrics']}", token=token)
        objectives = demo.load_objectives(f"http://127.0.0.1:{DEFAULT_PORTS['goal']}", token=token)
        stack.start_service("web")
        stack.wait_ready("web")
        prometheus = stack.start_prometheus()
        print(stack.banner(objectives, readings, prometheus), flush=True)
        while True:
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode}; see {stack.logs / f'{name}.log'}"
                    )
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...")
    except Exception as error:
        print(f"error: {error}", file=sys.stderr)
        stack.stop()
        sys.exit(1)
    stack.stop()


if __name__ == "__main__":
    main()
