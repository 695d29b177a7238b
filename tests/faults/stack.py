"""The system under fault: one Apache Kafka broker and the three services as real processes, the
driver's HTTP calls (all through ``Api``, so headers such as a bearer token live in one
place), and the faults themselves: SIGKILL and restart of a service, restart of the broker,
and the loss of the broker's whole data directory."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from contracts import ALIGNMENT_EVENTS, GOAL_EVENTS, KPI_READINGS, METRICS_EVENTS
from services.shared.broker import ensure_topics
from services.shared.local_broker import ApacheKafka, free_port
from tests.support import ServiceProcess, group_caught_up

SERVICES = ("goal", "metrics", "alignment")
#: Consumer group -> the topics it consumes: settled means each is consumed to its end.
CONSUMERS = {
    "okr-metrics": (KPI_READINGS,),
    "okr-alignment": (GOAL_EVENTS, METRICS_EVENTS),
    "okr-goal": (ALIGNMENT_EVENTS, METRICS_EVENTS),
}


class Api:
    """The driver's HTTP client for one service. Every request goes through ``request``,
    which adds the driver's headers (who acts; a bearer token once writes require one)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 15.0) -> None:
        self.base_url = base_url
        self.token = token
        self.timeout = timeout

    def headers(self) -> dict[str, str]:
        headers = {"X-Actor": "fault-driver"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.base_url}{path}",
            json=body,
            params=params,
            headers=self.headers(),
            timeout=self.timeout,
        )

    def get(self, path: str, **params: str) -> Any:
        """The JSON of a GET that must succeed."""
        answer = self.request("GET", path, params=params or None)
        answer.raise_for_status()
        return answer.json()


@dataclass
class Stack:
    """Broker and services under ``root``; everything a fault or a check needs to reach."""

    root: Path
    token: str | None = None
    broker: ApacheKafka = field(init=False)
    services: dict[str, ServiceProcess] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.broker = ApacheKafka(self.root / "kafka", port=free_port())

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def api(self, name: str) -> Api:
        return Api(self.services[name].url, self.token)

    def start(self) -> None:
        self.broker.start()
        asyncio.run(ensure_topics({"bootstrap_servers": self.bootstrap}))
        for name in SERVICES:
            data_dir = self.root / name
            data_dir.mkdir(parents=True, exist_ok=True)
            # Static group membership: a restarted service comes back as the same member and
            # takes its partitions at once, instead of waiting for its session to expire.
            self.services[name] = ServiceProcess(
                name, data_dir, self.bootstrap, extra_env={"OKR_INSTANCE_ID": f"faults-{name}"}
            )
        for service in self.services.values():
            service.start()

    def stop(self) -> None:
        for service in self.services.values():
            with contextlib.suppress(Exception):
                service.stop()
        if self.broker.running:
            self.stop_broker(graceful=True)

    # -- faults -----------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        self.services[name].kill()

    def restart(self, name: str) -> None:
        self.services[name].start(timeout=120)

    def stop_broker(self, graceful: bool) -> None:
        """Stop the broker: gracefully, or as a crash (SIGKILL), after which it recovers its
        logs from what it had written."""
        if graceful:
            self.broker.stop()
        else:
            self.broker.kill()

    def wipe_broker_data(self) -> None:
        self.broker.wipe()

    def start_broker(self) -> list[str]:
        """Start the broker again and create whatever topics it lacks (all, after a wipe)."""
        self.broker.start()
        return asyncio.run(ensure_topics({"bootstrap_servers": self.bootstrap}))

    # -- observations -----------------------------------------------------------------------

    def answers(self, name: str) -> bool:
        """Whether the service is up and ready (without raising while it is down)."""
        try:
            return self.api(name).request("GET", "/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def readiness(self, name: str) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = self.api(name).request("GET", "/readyz").json()
            return answer
        except (httpx.HTTPError, ValueError):
            return None

    def recorded_readings(self) -> int | None:
        """Readings the metrics service holds, or None while it does not answer."""
        try:
            recorded: int = sum(kpi["readings"] for kpi in self.api("metrics").get("/kpis"))
            return recorded
        except httpx.HTTPError:
            return None

    def settled(self) -> bool:
        return not self.unsettled()

    def unsettled(self) -> list[str]:
        """What keeps the system from having settled: a service not ready or with events left
        in its outbox, a consumer group short of the end of a topic it consumes."""
        waiting = []
        for name in SERVICES:
            readiness = self.readiness(name)
            if not readiness or not readiness.get("ready"):
                waiting.append(f"{name} not ready: {readiness}")
            elif readiness["outbox_backlog"]:
                waiting.append(
                    f"{name} outbox: {readiness['outbox_backlog']} events unpublished "
                    f"(log {readiness['log_position']})"
                )
        for group, topics in CONSUMERS.items():
            for topic in topics:
                if not asyncio.run(group_caught_up(self.bootstrap, group, topic)):
                    waiting.append(f"{group} short of the end of {topic}")
        return waiting

    def log_errors(self, name: str) -> list[str]:
        """The distinct errors in a service's log, each with how often it came, for a report
        that says why something did not settle."""
        service = self.services[name]
        path = service.data_dir.parent / f"{name}-{service.port}.log"
        counted: dict[str, int] = {}
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("aiokafka.errors.", "sqlite3.", "eventsourcing.")) or (
                " ERROR " in line and "relay" in line
            ):
                message = line.split(" ERROR ", 1)[-1].split("; retry")[0][:160]
                counted[message] = counted.get(message, 0) + 1
        return [f"{name} log: {count} x {message}" for message, count in counted.items()]
