"""``make run``: the whole system on one machine, embedded.

Starts the Kafka-compatible broker from the ``noida-db`` wheel (unless
``KAFKA_BOOTSTRAP_SERVERS`` points at a broker), creates the topics, starts each service on
SQLite under the data directory, loads the demo OKRs, prints where everything is, and stops
everything in order on Ctrl-C. State lives under ``var/`` and survives restarts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

from services import demo
from services.shared.broker import EmbeddedBroker, broker_answers, ensure_topics
from services.shared.settings import DEFAULT_PORTS, Settings

#: The services, in start order.
SERVICES = ("goal", "metrics", "alignment")
PROMETHEUS_CONFIG = Path(__file__).resolve().parent.parent / "deploy/prometheus/prometheus.yml"
PROMETHEUS_ADDRESS = "127.0.0.1:9090"
READY_TIMEOUT = 60.0


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = Settings()
        self.broker: EmbeddedBroker | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Optional: not watched like the services (it may fail on a taken port alone).
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.logs = root / "logs"

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
        self.broker = EmbeddedBroker(self.root / "kafka", port=9092)
        print(f"starting the embedded broker (noida-db) on {self.broker.bootstrap_servers} ...")
        self.broker.start()

    def start_service(self, name: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "OKR_DATA_DIR": str(self.settings.data_dir),
            "OKR_HTTP_PORT": str(DEFAULT_PORTS[name]),
        }
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
        url = f"http://127.0.0.1:{DEFAULT_PORTS[name]}/readyz"
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
            "",
            "Try:",
            "  curl -s http://127.0.0.1:8001/objectives",
            "  curl -s http://127.0.0.1:8002/kpis/net_promoter_score",
            f'  echo \'{{"kpi": "churn_rate", "value": 5.9, "source": "billing", '
            f'"observed_at": "{datetime.now(UTC).replace(microsecond=0).isoformat()}"}}\' '
            f"| kcat -P -b {self.bootstrap} -t kpi.readings",
            f"  kcat -C -b {self.bootstrap} -t goal.events -o beginning -e",
            "",
            "Ctrl-C stops everything; state is kept for the next run.",
        ]
        return "\n".join(lines)


def main() -> None:
    stack = Stack(Path("var"))
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
        readings = demo.load_kpis(f"http://127.0.0.1:{DEFAULT_PORTS['metrics']}")
        objectives = demo.load_objectives(f"http://127.0.0.1:{DEFAULT_PORTS['goal']}")
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
